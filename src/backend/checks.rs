//! Checks shared by backends that evaluate limits and conditions themselves (memory, fs,
//! and any user backend that wants the same semantics). Each returns the error every
//! backend must give for the situation.

use super::{Capabilities, ConditionalModes};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::key::Key;
use crate::object::{GetOptions, ObjectMeta, PartInfo, PartNumber, PutMode, PutOptions};

/// Checks a part list before completion: non-empty, strictly ascending, sizes within the
/// limits. Shared by the backends that assemble parts themselves.
pub fn check_part_list(
    backend: &str,
    key: &Key,
    caps: &Capabilities,
    parts: &[PartInfo],
) -> Result<()> {
    let err = |msg: String| {
        Error::invalid_input(Op::CompleteMultipart, backend, msg).with_key(key.as_str())
    };
    if parts.is_empty() {
        return Err(err("no parts to complete".into()));
    }
    for w in parts.windows(2) {
        if w[0].number >= w[1].number {
            return Err(err(format!(
                "parts must be listed in ascending order without repeats: {} then {}",
                w[0].number, w[1].number
            )));
        }
    }
    for p in &parts[..parts.len() - 1] {
        if p.size < caps.min_part_size {
            return Err(err(format!(
                "part {} is {} bytes, below the minimum part size {} (only the last part may be smaller)",
                p.number, p.size, caps.min_part_size
            )));
        }
    }
    Ok(())
}

/// Checks a part number and size before upload.
pub fn check_part(
    backend: &str,
    key: &Key,
    caps: &Capabilities,
    part: PartNumber,
    size: u64,
) -> Result<()> {
    if part.get() > caps.max_parts {
        return Err(Error::invalid_input(
            Op::PutPart,
            backend,
            format!(
                "part number {part} exceeds the limit of {} parts",
                caps.max_parts
            ),
        )
        .with_key(key.as_str()));
    }
    if size > caps.max_part_size {
        return Err(Error::invalid_input(
            Op::PutPart,
            backend,
            format!(
                "part of {size} bytes exceeds the maximum part size {}",
                caps.max_part_size
            ),
        )
        .with_key(key.as_str()));
    }
    Ok(())
}

/// Answers `Unsupported` for a put mode the capabilities do not list.
pub fn check_mode(
    backend: &str,
    op: Op,
    key: &Key,
    modes: &ConditionalModes,
    mode: &PutMode,
) -> Result<()> {
    if modes.supports(mode) {
        Ok(())
    } else {
        Err(Error::unsupported(
            op,
            backend,
            format!("conditional mode '{}' is not supported here", mode.name()),
        )
        .with_key(key.as_str()))
    }
}

/// Evaluates a write condition against the current object (`None` when absent).
pub fn check_write_condition(
    backend: &str,
    op: Op,
    key: &Key,
    current: Option<&ObjectMeta>,
    mode: &PutMode,
) -> Result<()> {
    match (mode, current) {
        (PutMode::Overwrite, _) => Ok(()),
        (PutMode::Create, None) => Ok(()),
        (PutMode::Create, Some(_)) => Err(Error::already_exists(op, backend, key.as_str())),
        (PutMode::IfMatch(want), Some(m)) if m.etag.as_deref() == Some(want.as_str()) => Ok(()),
        (PutMode::IfMatch(want), cur) => Err(Error::new(
            ErrorKind::PreconditionFailed,
            op,
            backend,
            match cur {
                Some(m) => format!(
                    "etag is {}, the write required {want}",
                    m.etag.as_deref().unwrap_or("none")
                ),
                None => format!("no object exists, the write required etag {want}"),
            },
        )
        .with_key(key.as_str())),
    }
}

/// Evaluates read conditions (see [`GetOptions`]), mapping a failure to its error.
pub fn check_get_conditions(
    backend: &str,
    key: &Key,
    opts: &GetOptions,
    meta: &ObjectMeta,
) -> Result<()> {
    match opts.check_conditions(meta) {
        None => Ok(()),
        Some(kind) => Err(Error::new(
            kind,
            Op::Get,
            backend,
            match kind {
                ErrorKind::NotModified => "the object has not changed",
                _ => "the read's condition does not hold",
            },
        )
        .with_key(key.as_str())),
    }
}

/// Resolves the requested range against `size`, mapping a failure to `InvalidInput`.
pub fn resolve_range(
    backend: &str,
    key: &Key,
    opts: &GetOptions,
    size: u64,
) -> Result<std::ops::Range<u64>> {
    match &opts.range {
        None => Ok(0..size),
        Some(r) => r
            .resolve(size)
            .map_err(|m| Error::invalid_input(Op::Get, backend, m).with_key(key.as_str())),
    }
}

/// Refuses content type or user metadata the capabilities say cannot be stored, rather than
/// dropping them.
pub fn check_attributes(
    backend: &str,
    op: Op,
    key: &Key,
    caps: &Capabilities,
    opts: &PutOptions,
) -> Result<()> {
    let missing = if !opts.metadata.is_empty() && !caps.user_metadata {
        Some("user metadata")
    } else if opts.content_type.is_some() && !caps.content_type {
        Some("a content type")
    } else {
        None
    };
    match missing {
        Some(what) => {
            Err(
                Error::unsupported(op, backend, format!("this backend cannot store {what}"))
                    .with_key(key.as_str()),
            )
        }
        None => Ok(()),
    }
}

/// Refuses an object larger than [`Capabilities::max_object_size`].
pub fn check_object_size(
    backend: &str,
    op: Op,
    key: &Key,
    caps: &Capabilities,
    size: u64,
) -> Result<()> {
    match caps.max_object_size {
        Some(max) if size > max => Err(Error::invalid_input(
            op,
            backend,
            format!("an object of {size} bytes exceeds the maximum object size {max}"),
        )
        .with_key(key.as_str())),
        _ => Ok(()),
    }
}

/// Refuses a key the capabilities say this store cannot hold as given: empty, `.` or `..`
/// segments where [`Capabilities::raw_keys`] or [`Capabilities::dot_segments_in_keys`] is
/// false, a segment over [`Capabilities::max_key_segment_len`], or a `\\` where
/// [`Capabilities::backslash_in_keys`] is false (a store that would turn it into `/` would
/// merge distinct keys).
pub fn check_key(backend: &str, op: Op, key: &Key, caps: &Capabilities) -> Result<()> {
    let dot_segments = key.segments().any(|s| s == "." || s == "..");
    if !caps.raw_keys && (dot_segments || key.segments().any(str::is_empty)) {
        return Err(Error::unsupported(
            op,
            backend,
            "this store cannot keep keys with empty, '.' or '..' segments as given \
             (Capabilities::raw_keys is false)",
        )
        .with_key(key.as_str()));
    }
    if !caps.dot_segments_in_keys && dot_segments {
        return Err(Error::invalid_input(
            op,
            backend,
            "this service resolves '.' and '..' segments in names, so it cannot hold this key \
             (Capabilities::dot_segments_in_keys is false)",
        )
        .with_key(key.as_str()));
    }
    if let Some(max) = caps.max_key_segment_len
        && key.segments().any(|s| s.len() > max)
    {
        return Err(Error::invalid_input(
            op,
            backend,
            format!("a key segment is longer than this backend's limit of {max} bytes"),
        )
        .with_key(key.as_str()));
    }
    if !caps.backslash_in_keys && key.as_str().contains('\\') {
        return Err(Error::unsupported(
            op,
            backend,
            "this store does not keep '\\' in keys (Capabilities::backslash_in_keys is false)",
        )
        .with_key(key.as_str()));
    }
    Ok(())
}

/// Answers `Unsupported` for a copy condition the capabilities do not list.
pub fn check_copy_mode(
    backend: &str,
    key: &Key,
    caps: &Capabilities,
    mode: &crate::object::CopyMode,
) -> Result<()> {
    use crate::object::CopyMode;
    let (supported, what) = match mode {
        CopyMode::Overwrite => (true, ""),
        CopyMode::Create => (caps.copy_if_absent, "copy-if-absent"),
        CopyMode::IfMatch(_) => (caps.copy_if_match, "copy-if-match"),
    };
    if supported {
        Ok(())
    } else {
        Err(
            Error::unsupported(Op::Copy, backend, format!("{what} is not supported here"))
                .with_key(key.as_str()),
        )
    }
}

/// Answers `Unsupported` for metadata added at completion where the capabilities say it
/// cannot be.
pub fn check_completion_metadata(
    backend: &str,
    key: &Key,
    caps: &Capabilities,
    metadata: &crate::object::Metadata,
) -> Result<()> {
    if metadata.is_empty() || (caps.complete_metadata && caps.user_metadata) {
        return Ok(());
    }
    Err(Error::unsupported(
        Op::CompleteMultipart,
        backend,
        "metadata cannot be added when an upload completes here",
    )
    .with_key(key.as_str()))
}
