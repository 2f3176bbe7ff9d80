//! The functions and constants every expression sees: `rand_int`,
//! `rand_float`, `rand_item`, `uuid`, `now_ms`, `now_us` and the gRPC status
//! codes, registered once per worker in a [`Functions`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cel::common::types::{CelDouble, CelInt, CelList, CelString, CelUInt};
use cel::common::value::{CowVal, Val};
use cel::{Context, ExecutionError, FunctionContext};
use rand::RngCore;
use rand::distr::uniform::SampleRange;

use super::ENV;
use super::convert::describe;

/// The gRPC status codes by name, as the `int` constants every expression sees.
pub const GRPC_STATUS_CODES: [(&str, i64); 17] = [
    ("OK", 0),
    ("CANCELLED", 1),
    ("UNKNOWN", 2),
    ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4),
    ("NOT_FOUND", 5),
    ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7),
    ("RESOURCE_EXHAUSTED", 8),
    ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10),
    ("OUT_OF_RANGE", 11),
    ("UNIMPLEMENTED", 12),
    ("INTERNAL", 13),
    ("UNAVAILABLE", 14),
    ("DATA_LOSS", 15),
    ("UNAUTHENTICATED", 16),
];

/// Whether `name` is one of the constants every expression sees.
pub fn is_constant(name: &str) -> bool {
    GRPC_STATUS_CODES.iter().any(|(n, _)| *n == name)
}

/// Functions and constants shared by all iterations of a worker: create one
/// per worker thread. A clone is a cheap handle on the same functions and
/// random generator (sharing one across threads works, at the cost of
/// contention on that generator).
#[derive(Clone)]
pub struct Functions {
    pub(super) root: Arc<Context<'static, 'static>>,
}

impl fmt::Debug for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Functions").finish_non_exhaustive()
    }
}

impl Default for Functions {
    fn default() -> Self {
        Self::new()
    }
}

/// The signature of a function added to a context, as `cel` names it.
type CelFn = Box<
    dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError>
        + Send
        + Sync,
>;

impl Functions {
    /// Registers the functions and constants, with a random generator seeded
    /// from the OS.
    pub fn new() -> Self {
        Self::with_seed(rand::random())
    }

    /// Like [`Functions::new`] with a fixed seed, so that the random
    /// functions repeat their draws (tests, reproducible runs).
    pub fn with_seed(seed: u64) -> Self {
        let rng = Arc::new(WyRand::new(seed));
        let mut root = Context::with_env(Arc::clone(&ENV));
        for (name, code) in GRPC_STATUS_CODES {
            root.add_variable_as_val(name, Box::new(CelInt::from(code)));
        }
        let functions: [(&str, CelFn); 6] = [
            ("rand_int", rand_int(Arc::clone(&rng))),
            ("rand_float", rand_float(Arc::clone(&rng))),
            ("rand_item", rand_item(Arc::clone(&rng))),
            ("uuid", uuid_fn(rng)),
            ("now_ms", Box::new(now_ms)),
            ("now_us", Box::new(now_us)),
        ];
        for (name, function) in functions {
            // These names are no standard overloads, so this cannot fail;
            // the tests call every one of them.
            let _ = root.add_function::<CelFn, _>(name, function);
        }
        Functions {
            root: Arc::new(root),
        }
    }
}

/// A wyrand generator whose state is an atomic counter: lock-free, `Sync`,
/// and one atomic add per draw.
struct WyRand {
    state: AtomicU64,
}

impl WyRand {
    fn new(seed: u64) -> Self {
        WyRand {
            state: AtomicU64::new(seed),
        }
    }

    fn next(&self) -> u64 {
        const INCREMENT: u64 = 0xa076_1d64_78bd_642f;
        let s = self
            .state
            .fetch_add(INCREMENT, Ordering::Relaxed)
            .wrapping_add(INCREMENT);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }
}

/// A borrowed [`WyRand`] as a `rand` generator, for `rand`'s unbiased
/// range sampling.
struct Draw<'a>(&'a WyRand);

impl RngCore for Draw<'_> {
    fn next_u32(&mut self) -> u32 {
        (self.0.next() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::rand_core::impls::fill_bytes_via_next(self, dst);
    }
}

/// The arguments of a global call, after checking there are `n` of them.
fn args<'a, 'c, 'v>(
    ftx: &'a FunctionContext<'c, 'v>,
    n: usize,
) -> Result<&'a [CowVal<'c, 'v>], ExecutionError> {
    if ftx.this.is_some() {
        return Err(ftx.error("is a function, not a method"));
    }
    if ftx.args.len() != n {
        return Err(ExecutionError::invalid_argument_count(n, ftx.args.len()));
    }
    Ok(&ftx.args)
}

fn int_arg(ftx: &FunctionContext<'_, '_>, v: &dyn Val) -> Result<i64, ExecutionError> {
    if let Some(i) = v.downcast_ref::<CelInt>() {
        return Ok(*i.inner());
    }
    if let Some(u) = v.downcast_ref::<CelUInt>() {
        return i64::try_from(*u.inner())
            .map_err(|_| ftx.error(format!("{} is too large", u.inner())));
    }
    Err(ftx.error(format!("wants int arguments, got {}", describe(v))))
}

fn number_arg(ftx: &FunctionContext<'_, '_>, v: &dyn Val) -> Result<f64, ExecutionError> {
    if let Some(d) = v.downcast_ref::<CelDouble>() {
        return Ok(*d.inner());
    }
    if let Some(i) = v.downcast_ref::<CelInt>() {
        return Ok(*i.inner() as f64);
    }
    if let Some(u) = v.downcast_ref::<CelUInt>() {
        return Ok(*u.inner() as f64);
    }
    Err(ftx.error(format!("wants number arguments, got {}", describe(v))))
}

fn rand_int(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        let a = args(ftx, 2)?;
        let min = int_arg(ftx, a[0].as_ref())?;
        let max = int_arg(ftx, a[1].as_ref())?;
        let n = (min..=max)
            .sample_single(&mut Draw(&rng))
            .map_err(|_| ftx.error(format!("min {min} is greater than max {max}")))?;
        Ok(CowVal::owned(CelInt::from(n)))
    })
}

fn rand_float(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        let a = args(ftx, 2)?;
        let min = number_arg(ftx, a[0].as_ref())?;
        let max = number_arg(ftx, a[1].as_ref())?;
        let x = if min == max && min.is_finite() {
            min
        } else {
            (min..max)
                .sample_single(&mut Draw(&rng))
                .map_err(|_| ftx.error(format!("no numbers between {min} and {max}")))?
        };
        Ok(CowVal::owned(CelDouble::from(x)))
    })
}

fn rand_item(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        let a = args(ftx, 1)?;
        let pick = |items: &[Box<dyn Val + '_>]| {
            let last = items
                .len()
                .checked_sub(1)
                .ok_or_else(|| ftx.error("the list is empty"))?;
            (0..=last)
                .sample_single(&mut Draw(&rng))
                .map_err(|_| ftx.error("the list is empty"))
        };
        let not_a_list = |v: &dyn Val| ftx.error(format!("wants a list, got {}", describe(v)));
        match &a[0] {
            // A list read from a variable is borrowed for the whole call:
            // hand back a borrow of its element rather than a copy.
            CowVal::Borrowed(v) => {
                let v = *v;
                let list = v.downcast_ref::<CelList>().ok_or_else(|| not_a_list(v))?;
                let i = pick(list.inner())?;
                Ok(CowVal::Borrowed(list.inner()[i].as_ref()))
            }
            CowVal::Owned(v) => {
                let list = v
                    .downcast_ref::<CelList>()
                    .ok_or_else(|| not_a_list(v.as_ref()))?;
                let i = pick(list.inner())?;
                Ok(CowVal::Owned(list.inner()[i].clone_as_boxed()))
            }
        }
    })
}

fn uuid_fn(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        args(ftx, 0)?;
        let mut bytes = [0u8; 16];
        Draw(&rng).fill_bytes(&mut bytes);
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut buf);
        Ok(CowVal::owned(CelString::from(text.to_owned())))
    })
}

fn now_us<'c, 'v>(ftx: &mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> {
    args(ftx, 0)?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| ftx.error(format!("the clock is before 1970: {e}")))?;
    let us = i64::try_from(since_epoch.as_micros())
        .map_err(|_| ftx.error("the clock is past the year 292 thousand"))?;
    Ok(CowVal::owned(CelInt::from(us)))
}

fn now_ms<'c, 'v>(ftx: &mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> {
    args(ftx, 0)?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| ftx.error(format!("the clock is before 1970: {e}")))?;
    let ms = i64::try_from(since_epoch.as_millis())
        .map_err(|_| ftx.error("the clock is past the year 292 million"))?;
    Ok(CowVal::owned(CelInt::from(ms)))
}
