//! ABI hardening end-to-end tests (being built).
