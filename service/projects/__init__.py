"""Projects, their service accounts and keys, and the sharing of fine-tuned models between them."""
