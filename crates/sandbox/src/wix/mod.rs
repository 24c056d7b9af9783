//! Wix emulator (being built).
