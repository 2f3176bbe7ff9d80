//! Vendored jslib.k6.io modules (placeholder until the vendored copies land).

/// The vendored copy of a jslib.k6.io module, by its URL, if Barrage ships it.
pub(crate) fn vendored(_url: &str) -> Option<&'static str> {
    None
}

/// Every vendored URL.
pub(crate) fn vendored_urls() -> impl Iterator<Item = &'static str> {
    std::iter::empty()
}
