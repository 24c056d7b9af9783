//! Bigcommerce end-to-end scenarios (being built).
