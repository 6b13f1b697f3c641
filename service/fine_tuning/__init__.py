"""Fine-tuning jobs: the API, the job store and the runner that trains each job."""
