//! `--report FILE.html`: one self-contained file written at the end of the run: the
//! page, uPlot, the run's points and tables and the summary JSON, all inlined. It
//! makes no request: it opens offline and as a CI artifact.

use std::path::Path;

use super::{Dashboard, assets};

/// The report's HTML: the dashboard's state and `summary` (k6's handleSummary JSON)
/// given to the page as `BARRAGE_REPORT`.
pub fn html(dash: &Dashboard, summary: &serde_json::Value) -> String {
    let data = format!(
        "{{\"init\":{},\"summary\":{}}}",
        dash.init_json(),
        serde_json::to_string(summary).unwrap_or_else(|_| "null".into())
    )
    // In JSON `<` only occurs inside strings, where `\u003c` means the same: no
    // `</script>` in the data can end the element early.
    .replace('<', "\\u003c");
    let head = format!(
        "<style>{}</style><style>{}</style>",
        assets::UPLOT_CSS,
        assets::APP_CSS
    );
    let body_end = format!(
        "<script>window.BARRAGE_REPORT = {data};</script><script>{}</script><script>{}</script>",
        assets::UPLOT_JS,
        assets::APP_JS
    );
    assets::INDEX_HTML
        .replace("{{HEAD}}", &head)
        .replace("{{BODY_END}}", &body_end)
}

/// Writes the report to `path` (creating its folder).
///
/// Fails if the folder or the file cannot be written.
pub fn write(path: &Path, dash: &Dashboard, summary: &serde_json::Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, html(dash, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inlined_assets_cannot_end_their_element() {
        // They are inlined as they are: none may hold `</` (a `</script>` or
        // `</style>` would end the element and spill the rest into the page).
        for (name, text) in [
            ("app.js", assets::APP_JS),
            ("app.css", assets::APP_CSS),
            ("uPlot.iife.min.js", assets::UPLOT_JS),
            ("uPlot.min.css", assets::UPLOT_CSS),
        ] {
            assert!(!text.contains("</"), "{name} holds `</`");
        }
    }
}
