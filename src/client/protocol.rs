//! The client protocol (requests, responses and their frames). Not written yet.
