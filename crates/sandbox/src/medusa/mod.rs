//! Medusa emulator (being built).
