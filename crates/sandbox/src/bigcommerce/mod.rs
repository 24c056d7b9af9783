//! Bigcommerce emulator (being built).
