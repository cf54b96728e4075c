//! The eventfd part of `/proc/PID/fdinfo/N`:
//! `eventfd-count: %16llx`, `eventfd-id: %d` and (kernel 6.7+) `eventfd-semaphore: %d`.

/// What fdinfo says about one eventfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventfdState {
    /// The counter.
    pub counter: u64,
    /// `EFD_SEMAPHORE` (false on kernels that do not print it).
    pub semaphore: bool,
}

fn field<'a>(raw: &'a str, key: &str) -> Option<&'a str> {
    raw.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Parses the eventfd lines of an fdinfo text; the error names what is missing or bad.
pub fn parse_eventfd(raw: &str) -> Result<EventfdState, String> {
    let count = field(raw, "eventfd-count").ok_or("no eventfd-count line")?;
    let counter = u64::from_str_radix(count, 16).map_err(|_| format!("eventfd-count {count:?}"))?;
    let semaphore = match field(raw, "eventfd-semaphore") {
        None | Some("0") => false,
        Some("1") => true,
        Some(v) => return Err(format!("eventfd-semaphore {v:?}")),
    };
    Ok(EventfdState { counter, semaphore })
}
