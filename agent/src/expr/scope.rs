//! [`Scope`]: the variables one evaluation reads, kept per virtual user and
//! reused across iterations.

use std::borrow::Borrow;
use std::fmt;
use std::sync::OnceLock;

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;

use super::{Functions, Value, json_to_value};

/// The variables visible to one evaluation: the VU's flow variables and the
/// last response (`status`, `message`, `json`, `headers`, `body`, names kept
/// with `as`), over the [`Functions`]' constants.
///
/// Keep one per VU and call [`Scope::clear_vars`] between iterations: the
/// slots of names set before are reused, so a steady flow allocates no
/// names, and a value is converted to the interpreter's form only when, and
/// the first time, an expression reads it.
#[derive(Clone)]
pub struct Scope {
    pub(super) functions: Functions,
    pub(super) vars: Vars,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.vars
                    .slots
                    .iter()
                    .filter_map(|s| Some((&s.name, s.value.as_ref()?))),
            )
            .finish()
    }
}

#[derive(Clone, Default)]
pub(super) struct Vars {
    // A short list scanned in order beats hashing for the handful of names a
    // flow uses.
    slots: Vec<Slot>,
}

#[derive(Clone)]
struct Slot {
    name: Box<str>,
    /// `None` once removed or cleared: the slot stays for the next `set`.
    value: Option<Value>,
    /// `value` as the interpreter's value, made on first read.
    val: OnceLock<Box<dyn Val>>,
}

impl VariableResolver for Vars {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let slot = self.slots.iter().find(|s| &*s.name == name)?;
        let value = slot.value.as_ref()?;
        let val = match slot.val.get() {
            Some(val) => val,
            None => {
                // Only a `Value::Function` fails to convert; it reads as unset.
                let val: Box<dyn Val> = value.clone().try_into().ok()?;
                slot.val.get_or_init(|| val)
            }
        };
        Some(CowVal::Borrowed(val.as_ref()))
    }
}

impl Scope {
    /// An empty scope over `functions`: a `&Functions`, a `Functions` or an
    /// `Rc`/`Arc` of one (the scope keeps a cheap handle).
    pub fn new(functions: impl Borrow<Functions>) -> Self {
        Scope {
            functions: functions.borrow().clone(),
            vars: Vars::default(),
        }
    }

    /// The functions this scope evaluates with.
    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    /// Sets `name` to `value`, replacing any value it had.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.vars.slots.iter_mut().find(|s| &*s.name == name) {
            Some(slot) => {
                slot.value = Some(value);
                slot.val = OnceLock::new();
            }
            None => self.vars.slots.push(Slot {
                name: name.into(),
                value: Some(value),
                val: OnceLock::new(),
            }),
        }
    }

    /// Sets `name` to a JSON value, see [`json_to_value`].
    pub fn set_json(&mut self, name: &str, value: &serde_json::Value) {
        self.set(name, json_to_value(value));
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars
            .slots
            .iter()
            .find(|s| &*s.name == name)
            .and_then(|s| s.value.as_ref())
    }

    /// Unsets `name`; the functions' constants stay visible.
    pub fn remove(&mut self, name: &str) {
        if let Some(slot) = self.vars.slots.iter_mut().find(|s| &*s.name == name) {
            slot.value = None;
            slot.val = OnceLock::new();
        }
    }

    /// Unsets every variable, keeping functions and constants, and the slots
    /// for reuse: call it between iterations.
    pub fn clear_vars(&mut self) {
        for slot in &mut self.vars.slots {
            slot.value = None;
            slot.val = OnceLock::new();
        }
    }

    /// The names set, in the order they were first set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars
            .slots
            .iter()
            .filter(|s| s.value.is_some())
            .map(|s| &*s.name)
    }
}
