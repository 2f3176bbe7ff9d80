//! One walk over the step tree, so no caller recurses through groups by hand.
//!
//! [`walk_steps`] visits every step in document order, pre-order: a group step, then
//! its inner steps. Each step comes with its dotted path, the place error messages
//! name: `flows.NAME[i]`, and `flows.NAME[i].group.steps[j]` inside a group (nested
//! groups add `.group.steps[k]` again). A step with `if:` is visited, then the step it
//! guards at the same path (`if:` sits beside the kind in the file). A poll is one step; its request is reached
//! with [`Step::requests`], which gives the requests of HTTP, gRPC and poll steps
//! uniformly.

use std::convert::Infallible;

use indexmap::IndexMap;

use super::{GrpcStep, HttpStep, OnCheckFail, ScenarioFile, Step};

/// Visits every step of `steps` and of the groups inside them, in document order, a
/// group before its inner steps, with the step's path: `{path}[{i}]` for `steps[i]`,
/// `{path}[{i}].group.steps[{j}]` for the `j`th step of the group at `i`, and so on
/// down nested groups.
///
/// `path` is where `steps` sit, e.g. `flows.main`. The first error `visit` returns
/// stops the walk and is returned.
pub fn walk_steps<'a, E>(
    steps: &'a [Step],
    path: &str,
    visit: &mut impl FnMut(&str, &'a Step) -> Result<(), E>,
) -> Result<(), E> {
    for (i, step) in steps.iter().enumerate() {
        let here = format!("{path}[{i}]");
        walk_one(step, &here, visit)?;
    }
    Ok(())
}

/// One step and what is inside it: a group's steps, an `if`'s step (at the same path:
/// `if:` sits beside the step's kind in the file).
fn walk_one<'a, E>(
    step: &'a Step,
    here: &str,
    visit: &mut impl FnMut(&str, &'a Step) -> Result<(), E>,
) -> Result<(), E> {
    visit(here, step)?;
    match step {
        Step::Group(g) => walk_steps(&g.steps, &format!("{here}.group.steps"), visit),
        Step::If(i) => walk_one(&i.step, here, visit),
        _ => Ok(()),
    }
}

fn walk_one_mut<'a, E>(
    step: &'a mut Step,
    here: &str,
    visit: &mut impl FnMut(&str, &'a mut Step) -> Result<(), E>,
) -> Result<(), E> {
    match step {
        Step::Group(g) => walk_steps_mut(&mut g.steps, &format!("{here}.group.steps"), visit),
        Step::If(i) => walk_one_mut(&mut i.step, here, visit),
        other => visit(here, other),
    }
}

/// [`walk_steps`] with mutable steps: the same steps in the same order with the same
/// paths, except that group steps and `if` steps are not handed to `visit`, only
/// walked into (a
/// `&'a mut` to a group would alias the steps inside it, which are visited for `'a`
/// too). The borrows live as long as `steps`', so a visitor may keep them.
pub fn walk_steps_mut<'a, E>(
    steps: &'a mut [Step],
    path: &str,
    visit: &mut impl FnMut(&str, &'a mut Step) -> Result<(), E>,
) -> Result<(), E> {
    for (i, step) in steps.iter_mut().enumerate() {
        let here = format!("{path}[{i}]");
        walk_one_mut(step, &here, visit)?;
    }
    Ok(())
}

impl ScenarioFile {
    /// [`walk_steps`] over every flow, in the file's order, with paths from
    /// `flows.NAME`.
    pub fn walk<'a, E>(
        &'a self,
        visit: &mut impl FnMut(&str, &'a Step) -> Result<(), E>,
    ) -> Result<(), E> {
        for (name, steps) in &self.flows {
            walk_steps(steps, &format!("flows.{name}"), visit)?;
        }
        Ok(())
    }

    /// [`walk_steps_mut`] over every flow, in the file's order, with paths from
    /// `flows.NAME` (group steps are walked into, not visited).
    pub fn walk_mut<'a, E>(
        &'a mut self,
        visit: &mut impl FnMut(&str, &'a mut Step) -> Result<(), E>,
    ) -> Result<(), E> {
        for (name, steps) in &mut self.flows {
            walk_steps_mut(steps, &format!("flows.{name}"), visit)?;
        }
        Ok(())
    }

    /// Every gRPC step of every flow, inside groups and polls too, in document order.
    pub fn grpc_steps_mut(&mut self) -> Vec<&mut GrpcStep> {
        let mut out = Vec::new();
        let Ok(()) = self.walk_mut(&mut |_, step| {
            for (_, request) in step.requests_mut() {
                if let RequestMut::Grpc(g) = request {
                    out.push(g);
                }
            }
            Ok::<(), Infallible>(())
        });
        out
    }
}

/// A step's request, HTTP or gRPC (see [`Step::requests`]).
#[derive(Debug, Clone, Copy)]
pub enum RequestRef<'a> {
    /// An HTTP request.
    Http(&'a HttpStep),
    /// A unary gRPC call.
    Grpc(&'a GrpcStep),
}

impl<'a> RequestRef<'a> {
    /// Its named checks: name → CEL expression.
    pub fn checks(self) -> &'a IndexMap<String, String> {
        match self {
            RequestRef::Http(h) => &h.checks,
            RequestRef::Grpc(g) => &g.checks,
        }
    }

    /// What to do when one of its checks fails.
    pub fn on_check_fail(self) -> Option<&'a OnCheckFail> {
        match self {
            RequestRef::Http(h) => h.on_check_fail.as_ref(),
            RequestRef::Grpc(g) => g.on_check_fail.as_ref(),
        }
    }

    /// The variable it keeps its response under (`as`).
    pub fn save_as(self) -> Option<&'a str> {
        match self {
            RequestRef::Http(h) => h.save_as.as_deref(),
            RequestRef::Grpc(g) => g.save_as.as_deref(),
        }
    }
}

/// A step's request, HTTP or gRPC, to change (see [`Step::requests_mut`]).
#[derive(Debug)]
pub enum RequestMut<'a> {
    /// An HTTP request.
    Http(&'a mut HttpStep),
    /// A unary gRPC call.
    Grpc(&'a mut GrpcStep),
}

impl Step {
    /// The requests this step sends, each with the field that holds it, relative to the
    /// step's path: `http` or `grpc` for a request step, `poll.http` or `poll.grpc`
    /// for a poll; nothing for other steps (a group's inner steps are steps of their
    /// own, see [`walk_steps`]).
    ///
    /// A validated poll has exactly one request; an unvalidated one may have none or
    /// both (then `poll.http` comes first).
    pub fn requests(&self) -> impl Iterator<Item = (&'static str, RequestRef<'_>)> {
        let (first, second) = match self {
            Step::Http(h) => (Some(("http", RequestRef::Http(h))), None),
            Step::Grpc(g) => (Some(("grpc", RequestRef::Grpc(g))), None),
            Step::Poll(p) => (
                p.http.as_ref().map(|h| ("poll.http", RequestRef::Http(h))),
                p.grpc.as_ref().map(|g| ("poll.grpc", RequestRef::Grpc(g))),
            ),
            _ => (None, None),
        };
        first.into_iter().chain(second)
    }

    /// [`Step::requests`], to change them.
    pub fn requests_mut(&mut self) -> impl Iterator<Item = (&'static str, RequestMut<'_>)> {
        let (first, second) = match self {
            Step::Http(h) => (Some(("http", RequestMut::Http(h))), None),
            Step::Grpc(g) => (Some(("grpc", RequestMut::Grpc(g))), None),
            Step::Poll(p) => {
                let p = &mut **p;
                (
                    p.http.as_mut().map(|h| ("poll.http", RequestMut::Http(h))),
                    p.grpc.as_mut().map(|g| ("poll.grpc", RequestMut::Grpc(g))),
                )
            }
            _ => (None, None),
        };
        first.into_iter().chain(second)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::duration::K6Duration;
    use crate::scenario::SleepSpec;

    /// Two flows with groups in groups, polls of both kinds and every other step.
    const FILE: &str = r#"
flows:
  main:
    - let: {a: 1}
    - group:
        name: outer
        steps:
          - http: {url: 'http://x/1'}
          - group:
              name: inner
              steps:
                - grpc: {addr: 'h:1', method: 'a.B/One'}
                - group: {name: empty, steps: []}
                - sleep: 1ms
          - poll: {every: 1s, max: 2, until: 'true', http: {url: 'http://x/2'}}
    - check: {ok: 'true'}
    - if: "iteration > 0"
      group: {name: guarded, steps: [{sleep: 2ms}]}
  second:
    - poll: {every: 1s, max: 2, until: 'true', grpc: {addr: 'h:2', method: 'a.B/Two'}}
    - record: {m: 1}
"#;

    fn file() -> ScenarioFile {
        serde_saphyr::from_str(FILE).unwrap()
    }

    fn kind(s: &Step) -> &'static str {
        match s {
            Step::Let(_) => "let",
            Step::Http(_) => "http",
            Step::Grpc(_) => "grpc",
            Step::Check(_) => "check",
            Step::Record(_) => "record",
            Step::Sleep(_) => "sleep",
            Step::Group(_) => "group",
            Step::Poll(_) => "poll",
            Step::If(_) => "if",
        }
    }

    const ALL: &[(&str, &str)] = &[
        ("flows.main[0]", "let"),
        ("flows.main[1]", "group"),
        ("flows.main[1].group.steps[0]", "http"),
        ("flows.main[1].group.steps[1]", "group"),
        ("flows.main[1].group.steps[1].group.steps[0]", "grpc"),
        ("flows.main[1].group.steps[1].group.steps[1]", "group"),
        ("flows.main[1].group.steps[1].group.steps[2]", "sleep"),
        ("flows.main[1].group.steps[2]", "poll"),
        ("flows.main[2]", "check"),
        ("flows.main[3]", "if"),
        ("flows.main[3]", "group"),
        ("flows.main[3].group.steps[0]", "sleep"),
        ("flows.second[0]", "poll"),
        ("flows.second[1]", "record"),
    ];

    #[test]
    fn every_step_in_document_order_with_its_path() {
        let f = file();
        let mut seen = Vec::new();
        let Ok(()) = f.walk(&mut |path, step| {
            seen.push((path.to_string(), kind(step)));
            Ok::<(), Infallible>(())
        });
        let want: Vec<(String, &str)> = ALL.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn paths_start_where_the_caller_says() {
        let f = file();
        let mut seen = Vec::new();
        let Ok(()) = walk_steps(&f.flows["second"], "x", &mut |path, _| {
            seen.push(path.to_string());
            Ok::<(), Infallible>(())
        });
        assert_eq!(seen, ["x[0]", "x[1]"]);
        let Ok(()) = walk_steps(&[], "x", &mut |_, _| -> Result<(), Infallible> {
            panic!("no step to visit")
        });
    }

    #[test]
    fn the_first_error_stops_the_walk() {
        let f = file();
        let mut seen = 0;
        let e = f.walk(&mut |path, step| {
            seen += 1;
            match step {
                Step::Grpc(_) => Err(path.to_string()),
                _ => Ok(()),
            }
        });
        assert_eq!(
            e,
            Err("flows.main[1].group.steps[1].group.steps[0]".to_string())
        );
        assert_eq!(seen, 5, "nothing after the failing step is visited");
    }

    #[test]
    fn the_mutable_walk_visits_the_same_steps_but_groups() {
        let mut f = file();
        let mut seen = Vec::new();
        let Ok(()) = f.walk_mut(&mut |path, step| {
            seen.push((path.to_string(), kind(step)));
            if let Step::Sleep(s) = step {
                *s = SleepSpec::Fixed(K6Duration(Duration::from_secs(7)));
            }
            Ok::<(), Infallible>(())
        });
        let want: Vec<(String, &str)> = ALL
            .iter()
            .filter(|(_, k)| *k != "group" && *k != "if")
            .map(|(p, k)| (p.to_string(), *k))
            .collect();
        assert_eq!(seen, want);
        let Step::Group(outer) = &f.flows["main"][1] else {
            panic!()
        };
        let Step::Group(inner) = &outer.steps[1] else {
            panic!()
        };
        assert!(
            matches!(&inner.steps[2], Step::Sleep(SleepSpec::Fixed(d)) if d.0.as_secs() == 7),
            "changes made through the walk stay"
        );
    }

    #[test]
    fn requests_of_requests_and_polls_with_their_field() {
        let f = file();
        let mut seen = Vec::new();
        let Ok(()) = f.walk(&mut |path, step| {
            for (field, r) in step.requests() {
                let target = match r {
                    RequestRef::Http(h) => h.url.clone(),
                    RequestRef::Grpc(g) => g.method.clone(),
                };
                seen.push(format!("{path}.{field} {target}"));
            }
            Ok::<(), Infallible>(())
        });
        assert_eq!(
            seen,
            [
                "flows.main[1].group.steps[0].http http://x/1",
                "flows.main[1].group.steps[1].group.steps[0].grpc a.B/One",
                "flows.main[1].group.steps[2].poll.http http://x/2",
                "flows.second[0].poll.grpc a.B/Two",
            ]
        );
        // An unvalidated poll with both requests gives both, http first.
        let both: Step = serde_saphyr::from_str(
            "poll: {every: 1s, max: 1, until: 'true', http: {url: 'http://x', as: h}, grpc: {addr: 'h:1', method: 'a.B/C', checks: {ok: 'true'}}}",
        )
        .unwrap();
        let fields: Vec<&str> = both.requests().map(|(f, _)| f).collect();
        assert_eq!(fields, ["poll.http", "poll.grpc"]);
        let (_, http) = both.requests().next().unwrap();
        assert_eq!(http.save_as(), Some("h"));
        assert!(http.checks().is_empty() && http.on_check_fail().is_none());
        let (_, grpc) = both.requests().nth(1).unwrap();
        assert_eq!(grpc.checks().len(), 1);
    }

    #[test]
    fn grpc_steps_mut_finds_them_in_nested_groups_and_polls_in_order() {
        let mut f = file();
        let methods: Vec<String> = f
            .grpc_steps_mut()
            .into_iter()
            .map(|g| {
                g.connections = Some(9);
                g.method.clone()
            })
            .collect();
        assert_eq!(methods, ["a.B/One", "a.B/Two"]);
        let mut connections = Vec::new();
        let Ok(()) = f.walk(&mut |_, step| {
            for (_, r) in step.requests() {
                if let RequestRef::Grpc(g) = r {
                    connections.push(g.connections);
                }
            }
            Ok::<(), Infallible>(())
        });
        assert_eq!(connections, [Some(9), Some(9)]);
    }
}
