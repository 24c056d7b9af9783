//! Wix end-to-end scenarios (being built).
