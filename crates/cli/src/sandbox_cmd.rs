//! `capture sandbox`: the platform emulators in the foreground, for people and scripts.
//!
//! ```text
//! capture sandbox [--platform optty|bigcommerce|medusa|wix|all] [--port N] [--orders FILE]
//! ```
//!
//! Prints one line per emulator (`<platform> <base URL> token <token>`), then `ready`, and
//! serves until interrupted. With `all` and a port N, the emulators take N, N+1, N+2, N+3 in the
//! order optty, bigcommerce, medusa, wix; port 0 (the default) lets each pick a free one.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use capture_sandbox::bigcommerce::{BigCommerceConfig, BigCommerceEmulator};
use capture_sandbox::medusa::{MedusaConfig, MedusaEmulator};
use capture_sandbox::orders::OrderFile;
use capture_sandbox::wix::{WixConfig, WixEmulator};
use capture_sandbox::{OpttyConfig, OpttyEmulator};

use crate::Exit;

/// Which emulators to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Which {
    /// The Optty Merchant API.
    Optty,
    /// BigCommerce payment actions and transactions.
    Bigcommerce,
    /// Medusa admin API v1.
    Medusa,
    /// Wix eCommerce.
    Wix,
    /// The four, on four ports.
    All,
}

/// A running emulator, whichever it is.
enum Running {
    Optty(OpttyEmulator),
    BigCommerce(BigCommerceEmulator),
    Medusa(MedusaEmulator),
    Wix(WixEmulator),
}

impl Running {
    fn base_url(&self) -> String {
        match self {
            Running::Optty(e) => e.base_url(),
            Running::BigCommerce(e) => e.base_url(),
            Running::Medusa(e) => e.base_url(),
            Running::Wix(e) => e.base_url(),
        }
    }

    async fn shutdown(self) {
        match self {
            Running::Optty(e) => e.shutdown().await,
            Running::BigCommerce(e) => e.shutdown().await,
            Running::Medusa(e) => e.shutdown().await,
            Running::Wix(e) => e.shutdown().await,
        }
    }
}

/// Starts one emulator with its demo data, or the file's orders for it; returns it and the line
/// that tells a user how to reach it.
async fn start(which: Which, addr: SocketAddr, file: &OrderFile) -> anyhow::Result<(Running, String)> {
    let bind = |name: &str| format!("binding the {name} emulator to {addr}");
    Ok(match which {
        Which::Optty => {
            let mut config = OpttyConfig::demo();
            if let Some(orders) = &file.optty {
                config.orders = orders.clone();
            }
            let e = OpttyEmulator::start_on(addr, config).await.with_context(|| bind("Optty"))?;
            let line = format!("optty        {}  token sandbox-optty-token", e.base_url());
            (Running::Optty(e), line)
        }
        Which::Bigcommerce => {
            let mut config = BigCommerceConfig::demo();
            if let Some(orders) = &file.bigcommerce {
                config.orders = orders.clone();
            }
            let store = config.store_hash.clone();
            let token = config.tokens.first().cloned().unwrap_or_default();
            let e = BigCommerceEmulator::start_on(addr, config).await.with_context(|| bind("BigCommerce"))?;
            let line = format!("bigcommerce  {}  token {token}  store_hash {store}", e.base_url());
            (Running::BigCommerce(e), line)
        }
        Which::Medusa => {
            let mut config = MedusaConfig::demo();
            if let Some((payments, orders)) = &file.medusa {
                config.payments = payments.clone();
                config.orders = orders.clone();
            }
            let token = config.tokens.first().cloned().unwrap_or_default();
            let e = MedusaEmulator::start_on(addr, config).await.with_context(|| bind("Medusa"))?;
            let line = format!("medusa       {}  token {token}", e.base_url());
            (Running::Medusa(e), line)
        }
        Which::Wix => {
            let mut config = WixConfig::demo();
            if let Some(orders) = &file.wix {
                config.orders = orders.clone();
            }
            let token = config.tokens.first().cloned().unwrap_or_default();
            let e = WixEmulator::start_on(addr, config).await.with_context(|| bind("Wix"))?;
            let line = format!("wix          {}  token {token}", e.base_url());
            (Running::Wix(e), line)
        }
        Which::All => anyhow::bail!("internal: `all` is not one emulator"),
    })
}

/// Runs the chosen emulators until Ctrl-C.
pub(crate) async fn run(which: Which, port: u16, orders: Option<&Path>) -> anyhow::Result<u8> {
    let file = match orders {
        Some(path) => match OrderFile::load(path) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Exit::Usage.code());
            }
        },
        None => OrderFile::default(),
    };
    let list = if which == Which::All {
        vec![Which::Optty, Which::Bigcommerce, Which::Medusa, Which::Wix]
    } else {
        vec![which]
    };
    let mut running = Vec::new();
    for (i, w) in list.iter().enumerate() {
        let port = if port == 0 {
            0
        } else {
            let offset = u16::try_from(i).unwrap_or(u16::MAX);
            port.checked_add(offset)
                .with_context(|| format!("--port {port}: port {port} + {i} is above 65535"))?
        };
        let (emulator, line) = start(*w, SocketAddr::from(([127, 0, 0, 1], port)), &file).await?;
        println!("{line}");
        running.push(emulator);
    }
    let first = running.first().map(Running::base_url).unwrap_or_default();
    println!(
        "control API: <base URL>/_sandbox/... (reset, faults, requests, orders; see crates/sandbox/README.md), e.g. {first}/_sandbox/requests"
    );
    println!("ready (Ctrl-C stops)");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    for emulator in running {
        emulator.shutdown().await;
    }
    Ok(Exit::Ok.code())
}
