//! Medusa connector (being built).
