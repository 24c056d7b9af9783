//! Medusa end-to-end scenarios (being built).
