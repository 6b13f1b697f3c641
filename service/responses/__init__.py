"""The Responses API: `/v1/responses` on the shared engine, with stored responses and background runs."""
