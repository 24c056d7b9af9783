//! Bigcommerce connector (being built).
