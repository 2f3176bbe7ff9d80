//! The front end, embedded at build time: the page's own HTML, JS and CSS
//! (`coordinator/web/`, hand-written) and uPlot's dist files (vendored from npm, see
//! `coordinator/web/vendor/README.md`). No node is needed to build or run Barrage.

/// The page (`{{HEAD}}` and `{{BODY_END}}` are filled by the server or the report).
pub const INDEX_HTML: &str = include_str!("../../web/index.html");
/// The page's script: charts and tables from the `init`, `point` and `board` events.
pub const APP_JS: &str = include_str!("../../web/app.js");
/// The page's styles.
pub const APP_CSS: &str = include_str!("../../web/app.css");
/// uPlot's browser build.
pub const UPLOT_JS: &str = include_str!("../../web/vendor/uPlot.iife.min.js");
/// uPlot's styles.
pub const UPLOT_CSS: &str = include_str!("../../web/vendor/uPlot.min.css");
