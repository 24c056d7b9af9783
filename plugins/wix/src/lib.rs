//! Wix connector (being built).
