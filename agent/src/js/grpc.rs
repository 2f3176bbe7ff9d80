//! `k6/net/grpc`'s native half (to be filled in): loading protos, connecting,
//! unary calls over the worker's h2 client, with the YAML engine's metrics.

use std::rc::Rc;

use rquickjs::Ctx;
use rquickjs::module::Exports;

use super::host::VuHost;

/// The native functions this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &[];

pub(super) fn export<'js>(
    _ctx: &Ctx<'js>,
    _exports: &Exports<'js>,
    _h: &Rc<VuHost>,
) -> rquickjs::Result<()> {
    Ok(())
}
