//! Faithful emulators of the e-commerce and payment platforms the capture engine talks to, served as
//! real HTTP on a loopback port, for demos and tests.
//!
//! Each emulator follows its platform's published contract (the platform pages in
//! `crates/sandbox/platforms/`, which cite the public API documentation); where the documentation is silent the emulator picks one behaviour and its
//! module documentation says which.
//!
//! - [`optty`]: the Optty Merchant API capture endpoint, `POST /orders/{orderReference}/capture`.
//! - [`bigcommerce`]: BigCommerce's `payment_actions/capture` and order transactions; captures
//!   are `capture pending` first and settle after a configurable number of status reads.
//! - [`wix`]: Wix eCommerce `capture-authorized-payments` and order transactions (PENDING
//!   captures settle after status reads).
//! - [`medusa`]: Medusa admin API v1 payment and order capture.
//! - [`faults`]: fault injection shared by all of them (error statuses, 429 with reset hints,
//!   slow answers, a connection dropped after the capture was applied) and the loopback server.
//!
//! - [`emulator`]: the scaffold the four share: the [`emulator::Emulator`] handle, the
//!   `/_sandbox` control routes (reset, faults, the request log), the JSON helper.
//! - [`orders`]: orders loaded from a JSON file (`capture sandbox --orders FILE`).
//! - [`client`]: a tiny HTTP/1.1 client for tests.
//!
//! Each has a `/_sandbox` control API (reset, faults, requests, books): no authentication,
//! loopback only. crates/sandbox/README.md documents it with curl examples (a test runs them all).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use capture_sandbox::{OpttyConfig, OpttyEmulator};
//!
//! let emulator = OpttyEmulator::start(OpttyConfig::demo()).await?;
//! println!("Optty emulator on {}", emulator.base_url());
//! // ... point a connector at emulator.base_url() with the token "sandbox-optty-token" ...
//! let books = emulator.captures("ORD-1001");
//! assert!(books.is_empty());
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod bigcommerce;
pub mod client;
pub mod emulator;
pub mod faults;
pub mod medusa;
pub mod optty;
pub mod orders;
pub mod wix;

pub use optty::{OpttyConfig, OpttyEmulator, OpttyOrder, RecordedCapture};
