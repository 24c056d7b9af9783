//! Loading connector plugins from shared libraries, and calling them safely.
//!
//! The loader opens the library with `RTLD_NOW | RTLD_LOCAL`, checks the descriptor header (magic,
//! ABI major, minor, size) before reading anything else, never unloads the library, and validates
//! every byte a plugin hands back (size cap, UTF-8, JSON schema).

use std::ffi::c_int;
use std::path::{Path, PathBuf};

use capture_connector_api::abi::{
    ABI_MAJOR, ABI_MINOR, Buffer, CallFn, DESCRIPTOR_SIZE_V1_0, DESCRIPTOR_SIZE_V1_1, DescriptorHeader,
    ENTRY_SYMBOL, EntryFn, FreeFn, MAGIC, ManifestFn, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use capture_connector_api::{
    CaptureCall, CaptureResult, ConnectorError, HttpRequest, Manifest, ParseCall, SCHEMA_VERSION, StatusCall,
    StatusParseCall,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest buffer a plugin may return (manifest, request or result).
pub const MAX_PLUGIN_OUTPUT: usize = 1 << 20;

/// Why a plugin could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginLoadError {
    /// No file at the path.
    #[error("connector plugin {path}: no such file (build it with `cargo build --workspace`)")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The dynamic loader refused the file (not a library, wrong architecture, missing symbols).
    #[error("connector plugin {path}: cannot be loaded as a shared library: {message}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The library does not export `capture_connector_entry`.
    #[error("connector plugin {path}: no `capture_connector_entry` symbol: not a capture connector")]
    MissingEntry {
        /// The path.
        path: PathBuf,
    },
    /// The entry function returned a null pointer.
    #[error("connector plugin {path}: the entry function returned no descriptor")]
    NullDescriptor {
        /// The path.
        path: PathBuf,
    },
    /// The descriptor does not start with the magic number.
    #[error("connector plugin {path}: descriptor has magic {found:#010x}, expected {MAGIC:#010x}")]
    BadMagic {
        /// The path.
        path: PathBuf,
        /// What it had.
        found: u32,
    },
    /// The ABI version is not one this host can load.
    #[error(
        "connector plugin {path}: built for connector ABI {major}.{minor}, this engine loads ABI {ABI_MAJOR}.0 to {ABI_MAJOR}.{ABI_MINOR}; {hint}"
    )]
    AbiVersion {
        /// The path.
        path: PathBuf,
        /// The plugin's major.
        major: u16,
        /// The plugin's minor.
        minor: u16,
        /// What to do.
        hint: &'static str,
    },
    /// The descriptor is smaller than its version requires.
    #[error(
        "connector plugin {path}: descriptor is {size} bytes, ABI {ABI_MAJOR}.0 needs at least {DESCRIPTOR_SIZE_V1_0}"
    )]
    DescriptorTooSmall {
        /// The path.
        path: PathBuf,
        /// Its declared size.
        size: u32,
    },
    /// A required function pointer is null.
    #[error("connector plugin {path}: descriptor function `{function}` is null")]
    MissingFunction {
        /// The path.
        path: PathBuf,
        /// Which function.
        function: &'static str,
    },
    /// The manifest could not be read or is invalid.
    #[error("connector plugin {path}: invalid manifest: {source}")]
    Manifest {
        /// The path.
        path: PathBuf,
        /// What was wrong.
        source: PluginCallError,
    },
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginCallError {
    /// The connector refused the call with its own error.
    #[error("connector refused: {0}")]
    Refused(ConnectorError),
    /// The connector panicked (caught at the boundary).
    #[error("connector panicked: {0}")]
    Panicked(String),
    /// The plugin broke the ABI contract (null buffer, unknown status, oversized output).
    #[error("connector broke the ABI contract: {0}")]
    Contract(String),
    /// The plugin does not provide this function (older ABI minor or capability not declared).
    #[error("connector does not support the {0}")]
    Unsupported(&'static str),
    /// The plugin's output is not valid UTF-8 JSON of the expected schema.
    #[error("connector returned invalid output: {0}")]
    InvalidOutput(String),
}

/// A loaded connector plugin. Cheap to share (`Arc`); safe to call from many threads.
#[derive(Debug)]
pub struct Plugin {
    path: PathBuf,
    manifest: Manifest,
    abi: (u16, u16),
    build_capture: CallFn,
    parse_capture: CallFn,
    free_buffer: FreeFn,
    /// ABI 1.1; `None` for a 1.0 plugin or one that does not read status.
    build_status: Option<CallFn>,
    parse_status: Option<CallFn>,
}

// SAFETY: the function pointers point into a library that is never unloaded, and the ABI requires
// every plugin function to be callable from many threads at once.
unsafe impl Send for Plugin {}
// SAFETY: as above; `Plugin` holds no interior mutability.
unsafe impl Sync for Plugin {}

impl Plugin {
    /// Loads a plugin from a shared library file.
    pub fn load(path: &Path) -> Result<Plugin, PluginLoadError> {
        let path_buf = path.to_path_buf();
        if !path.is_file() {
            return Err(PluginLoadError::NotFound { path: path_buf });
        }
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
        // SAFETY: loading a library runs its initialisers; plugins are trusted native code chosen by
        // the operator's configuration, as documented in the ABI specification.
        let lib = unsafe { libloading::os::unix::Library::open(Some(path), flags) }
            .map_err(|e| PluginLoadError::Open { path: path_buf.clone(), message: e.to_string() })?;
        // SAFETY: the symbol's type is the documented entry function type.
        let entry: EntryFn = match unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL) } {
            Ok(sym) => *sym,
            Err(_) => return Err(PluginLoadError::MissingEntry { path: path_buf }),
        };
        // Never unload: function pointers and static data stay valid for the life of the process.
        std::mem::forget(lib);
        // SAFETY: calling the documented entry function, which takes no arguments.
        let desc = unsafe { entry() };
        if desc.is_null() {
            return Err(PluginLoadError::NullDescriptor { path: path_buf });
        }
        // SAFETY: every descriptor, whatever its version, starts with the header.
        let header: DescriptorHeader = unsafe { std::ptr::read(desc.cast::<DescriptorHeader>()) };
        if header.magic != MAGIC {
            return Err(PluginLoadError::BadMagic { path: path_buf, found: header.magic });
        }
        let (major, minor) = (header.abi_major, header.abi_minor);
        if major != ABI_MAJOR {
            let hint = "rebuild the plugin against this engine's capture-connector-api";
            return Err(PluginLoadError::AbiVersion { path: path_buf, major, minor, hint });
        }
        if minor > ABI_MINOR {
            let hint = "the plugin is newer than this engine: upgrade the engine or rebuild the plugin";
            return Err(PluginLoadError::AbiVersion { path: path_buf, major, minor, hint });
        }
        if (header.struct_size as usize) < DESCRIPTOR_SIZE_V1_0 {
            return Err(PluginLoadError::DescriptorTooSmall { path: path_buf, size: header.struct_size });
        }
        // Read field by field, never past what the plugin's `struct_size` covers: a 1.0 plugin's
        // descriptor ends at `free_buffer`.
        let missing = |function| PluginLoadError::MissingFunction { path: path_buf.clone(), function };
        // SAFETY: the header says the descriptor is at least the 1.0 size; these fields lie in it.
        let (manifest, build, parse, free) =
            unsafe { ((*desc).manifest, (*desc).build_capture, (*desc).parse_capture, (*desc).free_buffer) };
        let manifest_fn: ManifestFn = manifest.ok_or_else(|| missing("manifest"))?;
        let build_capture = build.ok_or_else(|| missing("build_capture"))?;
        let parse_capture = parse.ok_or_else(|| missing("parse_capture"))?;
        let free_buffer = free.ok_or_else(|| missing("free_buffer"))?;
        let (build_status, parse_status) =
            if minor >= 1 && header.struct_size as usize >= DESCRIPTOR_SIZE_V1_1 {
                // SAFETY: a 1.1 descriptor of at least the 1.1 size has these fields.
                unsafe { ((*desc).build_status, (*desc).parse_status) }
            } else {
                (None, None)
            };

        let mut out = Buffer::empty();
        // SAFETY: `out` is a valid, writable buffer, as the ABI requires.
        let status = unsafe { manifest_fn(&mut out) };
        let manifest = take_output::<Manifest>(status, out, free_buffer)
            .and_then(|m| validate_manifest(m).map_err(PluginCallError::InvalidOutput))
            .map_err(|source| PluginLoadError::Manifest { path: path_buf.clone(), source })?;
        Ok(Plugin {
            path: path_buf,
            manifest,
            abi: (major, minor),
            build_capture,
            parse_capture,
            free_buffer,
            build_status,
            parse_status,
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plugin's ABI version (major, minor).
    pub fn abi_version(&self) -> (u16, u16) {
        self.abi
    }

    /// Asks the connector to build the capture request.
    pub fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, PluginCallError> {
        self.call(self.build_capture, call)
    }

    /// Asks the connector to read the platform's answer.
    pub fn parse_capture(&self, call: &ParseCall) -> Result<CaptureResult, PluginCallError> {
        self.call(self.parse_capture, call)
    }

    /// Whether the plugin can read a capture's state (ABI 1.1 and `capabilities.status_query`).
    pub fn supports_status(&self) -> bool {
        self.build_status.is_some() && self.parse_status.is_some() && self.manifest.capabilities.status_query
    }

    /// Asks the connector to build a status query.
    pub fn build_status(&self, call: &StatusCall) -> Result<HttpRequest, PluginCallError> {
        match (self.supports_status(), self.build_status) {
            (true, Some(f)) => self.call(f, call),
            _ => Err(PluginCallError::Unsupported("status query")),
        }
    }

    /// Asks the connector to read a status answer.
    pub fn parse_status(&self, call: &StatusParseCall) -> Result<CaptureResult, PluginCallError> {
        match (self.supports_status(), self.parse_status) {
            (true, Some(f)) => self.call(f, call),
            _ => Err(PluginCallError::Unsupported("status query")),
        }
    }

    fn call<I: Serialize, O: DeserializeOwned>(&self, f: CallFn, input: &I) -> Result<O, PluginCallError> {
        let bytes = serde_json::to_vec(input).map_err(|e| PluginCallError::Contract(e.to_string()))?;
        let mut out = Buffer::empty();
        // SAFETY: `bytes` is valid for the call and `out` is writable, as the ABI requires.
        let status = unsafe { f(bytes.as_ptr(), bytes.len(), &mut out) };
        take_output(status, out, self.free_buffer)
    }
}

/// Copies the plugin's output, frees it with the plugin's own free function, and decodes it.
fn take_output<O: DeserializeOwned>(status: c_int, out: Buffer, free: FreeFn) -> Result<O, PluginCallError> {
    let bytes = if out.ptr.is_null() {
        if out.len != 0 {
            return Err(PluginCallError::Contract(format!("null buffer with length {}", out.len)));
        }
        Vec::new()
    } else if out.len > MAX_PLUGIN_OUTPUT {
        let len = out.len;
        // SAFETY: the buffer came from this plugin and is given back exactly once.
        unsafe { free(out) };
        return Err(PluginCallError::Contract(format!(
            "output of {len} bytes exceeds the {MAX_PLUGIN_OUTPUT}-byte cap"
        )));
    } else {
        // SAFETY: the plugin wrote `len` bytes at `ptr` (checked non-null) and keeps them until freed.
        let v = unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec();
        // SAFETY: the buffer came from this plugin and is given back exactly once.
        unsafe { free(out) };
        v
    };
    match status {
        STATUS_OK => {
            if bytes.is_empty() {
                return Err(PluginCallError::Contract("success status with an empty buffer".into()));
            }
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| PluginCallError::InvalidOutput(format!("not UTF-8: {e}")))?;
            serde_json::from_str(text).map_err(|e| PluginCallError::InvalidOutput(e.to_string()))
        }
        STATUS_ERROR => {
            let err: ConnectorError = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                ConnectorError::new("unreadable_error", String::from_utf8_lossy(&bytes).into_owned())
            });
            Err(PluginCallError::Refused(err))
        }
        STATUS_PANIC => Err(PluginCallError::Panicked(String::from_utf8_lossy(&bytes).into_owned())),
        other => Err(PluginCallError::Contract(format!("unknown status code {other}"))),
    }
}

fn validate_manifest(m: Manifest) -> Result<Manifest, String> {
    if m.id.is_empty()
        || !m.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(format!("id `{}` must be non-empty [a-z0-9_-]", m.id));
    }
    if m.version.is_empty() {
        return Err("version is empty".into());
    }
    if m.schema != SCHEMA_VERSION {
        return Err(format!("message schema {} is not supported (engine speaks {SCHEMA_VERSION})", m.schema));
    }
    if m.capabilities.max_currency_exponent > 4 {
        return Err(format!(
            "max_currency_exponent {} is out of range",
            m.capabilities.max_currency_exponent
        ));
    }
    Ok(m)
}
