//! Linearizability checking in the Wing–Gong / Lowe / Porcupine style.
//!
//! The search walks a doubly linked list of call and return entries ordered
//! by time. At each step it tries to linearize the first pending call whose
//! operation the model accepts in the current state ("lifting" its call and
//! return out of the list); when it meets the return of an operation that is
//! not linearized yet, the current prefix cannot be extended and it
//! backtracks. A cache of (set of linearized operations, model state) pairs
//! prunes prefixes that reach an already explored configuration, which is
//! what makes the search practical (Lowe, "Testing for linearizability",
//! 2017).
//!
//! Operations with an unknown outcome return at +infinity, so they may be
//! linearized anywhere after their call, and an operation with an unknown
//! outcome that was never linearized is taken not to have happened at all:
//! the search succeeds once every operation with a finite return is
//! linearized.
//!
//! Histories over several keys are split per key and each key is checked on
//! its own (linearizability is compositional, Herlihy & Wing 1990).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Debug};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant};

use crate::history::{pair_operations, HistoryError, Key, Op, Operation, Outcome, Value, F};

/// A sequential specification: the states an object can be in and how each
/// operation moves between them.
pub trait Model {
    /// What the search linearizes (for registers, a paired [`Operation`]).
    type Op;
    /// Hashed into the memoization cache, so keep it small.
    type State: Clone + Eq + Hash + Debug;

    fn init(&self) -> Self::State;

    /// The state after `op` takes effect in `state`, or `None` if `op` could
    /// not have happened there (e.g. a read that saw a different value).
    /// Must accept operations whose outcome is unknown when they could have
    /// succeeded: the search itself covers the "did not happen" case.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// A compare-and-set register holding an optional integer, initially `nil`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister;

impl Model for CasRegister {
    type Op = Operation;
    type State = Option<i64>;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, op: &Operation) -> Option<Option<i64>> {
        if op.outcome == Outcome::Fail {
            // A failed operation definitely had no effect. The checker drops
            // these before searching; this arm only keeps the model honest if
            // it is used on its own.
            return Some(*state);
        }
        match (op.f, op.input) {
            (F::Read, _) => {
                if op.outcome == Outcome::Unknown {
                    return Some(*state); // observed nothing, constrains nothing
                }
                let seen = match op.output {
                    Value::Nil => None,
                    Value::Int(v) => Some(v),
                    Value::Pair(..) => return None,
                };
                (seen == *state).then_some(*state)
            }
            (F::Write, Value::Int(v)) => Some(Some(v)),
            // Both an `ok` CAS and an unknown-outcome CAS that is linearized
            // must have found `from`; an unknown CAS that failed is covered by
            // leaving it out of the linearization.
            (F::Cas, Value::Pair(from, to)) => (*state == Some(from)).then_some(Some(to)),
            _ => None, // malformed input; pair_operations rejects these
        }
    }
}

/// Limits on one check. Running out of any of them yields
/// [`Verdict::Unknown`], never a definite answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock limit for the whole check (all keys together).
    pub budget_ms: Option<u64>,
    /// Limit on search steps (entries visited), across all keys.
    pub max_steps: Option<u64>,
    /// Limit on memoized configurations per key; bounds memory, since each
    /// entry holds a bitset of the linearized operations plus a state.
    pub max_cache_entries: Option<usize>,
}

impl Default for Budget {
    /// 10 s, unlimited steps, 5 M cache entries per key (roughly 0.5–1 GB
    /// for histories of a few thousand operations).
    fn default() -> Self {
        Budget {
            budget_ms: Some(10_000),
            max_steps: None,
            max_cache_entries: Some(5_000_000),
        }
    }
}

impl Budget {
    pub fn unlimited() -> Budget {
        Budget {
            budget_ms: None,
            max_steps: None,
            max_cache_entries: None,
        }
    }

    pub fn with_ms(budget_ms: u64) -> Budget {
        Budget {
            budget_ms: Some(budget_ms),
            ..Budget::default()
        }
    }
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations respects both real time and the model.
    Linearizable,
    /// No such order exists. Operation ids are those given to the checker;
    /// for histories they are the operations' `call_index` (history position
    /// of the invocation).
    NotLinearizable {
        /// The key whose sub-history failed (`None` for unkeyed histories).
        key: Option<Key>,
        /// The longest linearization the search built before getting stuck,
        /// in linearization order.
        longest_prefix: Vec<usize>,
        /// The operation whose return was reached, after that prefix, without
        /// any way to linearize it first.
        stuck_op: usize,
        /// The model state after `longest_prefix`, formatted with `Debug`.
        state_after_prefix: String,
        /// Human-readable summary of the above.
        message: String,
    },
    /// A budget ran out before the search finished; nothing is known.
    Unknown {
        reason: String,
        steps: u64,
        elapsed_ms: u64,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Verdict::Unknown { .. })
    }

    /// `Some(true/false)` for a definite verdict, `None` for unknown.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Verdict::Linearizable => Some(true),
            Verdict::NotLinearizable { .. } => Some(false),
            Verdict::Unknown { .. } => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable { message, .. } => write!(f, "not linearizable: {message}"),
            Verdict::Unknown { reason, .. } => write!(f, "unknown: {reason}"),
        }
    }
}

/// An operation placed in time, for [`check_timed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOp<O> {
    /// Caller-chosen identifier, echoed in verdicts.
    pub id: usize,
    pub call: u64,
    /// `None`: unknown outcome, returns at +infinity and may be left out.
    pub ret: Option<u64>,
    pub op: O,
}

/// Checks a raw history of register events: pairs it, then runs
/// [`check_operations`] with the CAS register model.
pub fn check_cas_history(history: &[Op], budget: &Budget) -> Result<Verdict, HistoryError> {
    Ok(check_operations(
        &CasRegister,
        &pair_operations(history)?,
        budget,
    ))
}

/// Checks paired operations, each key independently.
///
/// Per Jepsen semantics, failed operations are dropped (they did not happen)
/// and so are reads with an unknown outcome (they observed nothing).
pub fn check_operations<M: Model<Op = Operation>>(
    model: &M,
    ops: &[Operation],
    budget: &Budget,
) -> Verdict {
    let mut by_key: BTreeMap<Option<&Key>, Vec<TimedOp<Operation>>> = BTreeMap::new();
    for op in ops {
        let informative = match op.outcome {
            Outcome::Ok => true,
            Outcome::Fail => false,
            Outcome::Unknown => op.f != F::Read,
        };
        if !informative {
            continue;
        }
        by_key.entry(op.key.as_ref()).or_default().push(TimedOp {
            id: op.call_index,
            call: op.call_index as u64,
            ret: op.return_index.map(|r| r as u64),
            op: op.clone(),
        });
    }

    let mut meter = Meter::new(budget);
    let mut first_unknown = None;
    for (key, partition) in by_key {
        match search(model, &partition, &mut meter) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable {
                longest_prefix,
                stuck_op,
                state_after_prefix,
                ..
            } => {
                let message =
                    describe_failure(key, &longest_prefix, stuck_op, &state_after_prefix, ops);
                return Verdict::NotLinearizable {
                    key: key.cloned(),
                    longest_prefix,
                    stuck_op,
                    state_after_prefix,
                    message,
                };
            }
            // Keep going: another key may still prove the history invalid,
            // which is a definite answer.
            unknown @ Verdict::Unknown { .. } => {
                if first_unknown.is_none() {
                    first_unknown = Some(match unknown {
                        Verdict::Unknown {
                            reason,
                            steps,
                            elapsed_ms,
                        } => Verdict::Unknown {
                            reason: match key {
                                Some(k) => format!("key {k}: {reason}"),
                                None => reason,
                            },
                            steps,
                            elapsed_ms,
                        },
                        other => other,
                    });
                }
            }
        }
    }
    first_unknown.unwrap_or(Verdict::Linearizable)
}

/// Checks a single object's operations against any model.
pub fn check_timed<M: Model>(model: &M, ops: &[TimedOp<M::Op>], budget: &Budget) -> Verdict {
    let mut meter = Meter::new(budget);
    search(model, ops, &mut meter)
}

fn describe_failure(
    key: Option<&Key>,
    prefix: &[usize],
    stuck_op: usize,
    state: &str,
    ops: &[Operation],
) -> String {
    let stuck = ops.iter().find(|o| o.call_index == stuck_op);
    let what = match stuck {
        Some(o) => {
            let ret = o.return_index.map_or("∞".to_string(), |r| r.to_string());
            let shown = if o.f == F::Read { o.output } else { o.input };
            format!(
                "process {} {:?} {} (events {}..{})",
                o.process, o.f, shown, o.call_index, ret
            )
        }
        None => format!("operation {stuck_op}"),
    };
    let key = key.map(|k| format!("key {k}: ")).unwrap_or_default();
    format!(
        "{key}{what} cannot be linearized after the longest linearizable prefix \
         ({} ops, state {state})",
        prefix.len()
    )
}

/// Tracks the shared time and step budget across keys.
struct Meter {
    start: Instant,
    deadline: Option<Instant>,
    max_steps: Option<u64>,
    max_cache_entries: Option<usize>,
    steps: u64,
}

/// How often (in steps) the clock is read: reading it every step would cost
/// more than the step itself.
const CLOCK_CHECK_INTERVAL_STEPS: u64 = 1024;

impl Meter {
    fn new(budget: &Budget) -> Meter {
        let start = Instant::now();
        Meter {
            start,
            deadline: budget.budget_ms.map(|ms| start + Duration::from_millis(ms)),
            max_steps: budget.max_steps,
            max_cache_entries: budget.max_cache_entries,
            steps: 0,
        }
    }

    /// Counts one step; `Some(reason)` once a limit is exceeded.
    fn tick(&mut self) -> Option<String> {
        self.steps += 1;
        if let Some(max) = self.max_steps {
            if self.steps > max {
                return Some(format!("step budget of {max} exhausted"));
            }
        }
        // Also on the first step, so that a zero budget is honoured exactly.
        if self.steps.is_multiple_of(CLOCK_CHECK_INTERVAL_STEPS) || self.steps == 1 {
            if let Some(deadline) = self.deadline {
                if Instant::now() >= deadline {
                    return Some(format!(
                        "time budget of {} ms exhausted",
                        (deadline - self.start).as_millis()
                    ));
                }
            }
        }
        None
    }

    fn unknown(&self, reason: String) -> Verdict {
        Verdict::Unknown {
            reason,
            steps: self.steps,
            elapsed_ms: self.start.elapsed().as_millis() as u64,
        }
    }
}

/// Head sentinel of the entry list (the tail sentinel is its last entry).
const HEAD: usize = 0;

/// The DFS described in the module docs, over one key's operations.
fn search<M: Model>(model: &M, ops: &[TimedOp<M::Op>], meter: &mut Meter) -> Verdict {
    let mut list = EntryList::new(ops);
    let tail = list.tail();

    let words = ops.len().div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut state = model.init();
    let mut cache: Cache<M::State> = Cache::default();
    // Lifted call entries with the state before each, to undo on backtrack.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    // Deepest point where the search got stuck: (prefix, stuck op, state).
    let mut deepest: Option<(Vec<usize>, usize, M::State)> = None;

    let mut entry = list.next[HEAD];
    loop {
        if let Some(reason) = meter.tick() {
            return meter.unknown(reason);
        }
        // Reaching the tail, or the first return at +infinity, means every
        // operation with a finite return has been linearized; operations
        // still pending here have unknown outcomes and are taken not to have
        // happened.
        if entry == tail || list.infinite[entry] {
            return Verdict::Linearizable;
        }
        let op = list.op[entry];
        if list.is_call[entry] {
            if let Some(next_state) = model.step(&state, &ops[op].op) {
                set_bit(&mut linearized, op);
                if cache.insert(&linearized, &next_state, meter.max_cache_entries) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    list.lift(entry);
                    entry = list.next[HEAD];
                    continue;
                }
                clear_bit(&mut linearized, op);
                if cache.full {
                    return meter.unknown(format!(
                        "cache limit of {} entries reached",
                        meter.max_cache_entries.unwrap_or(usize::MAX)
                    ));
                }
            }
            entry = list.next[entry];
        } else {
            // The return of an unlinearized operation: it had to take effect
            // before now, and no order of the pending calls allows that.
            if deepest
                .as_ref()
                .is_none_or(|(prefix, _, _)| stack.len() > prefix.len())
            {
                let prefix = stack.iter().map(|&(e, _)| ops[list.op[e]].id).collect();
                deepest = Some((prefix, ops[op].id, state.clone()));
            }
            let Some((call_entry, previous)) = stack.pop() else {
                let (longest_prefix, stuck_op, state) = deepest.expect("recorded just above");
                return Verdict::NotLinearizable {
                    key: None,
                    longest_prefix,
                    stuck_op,
                    state_after_prefix: format!("{state:?}"),
                    message: format!("operation {stuck_op} cannot be linearized"),
                };
            };
            state = previous;
            clear_bit(&mut linearized, list.op[call_entry]);
            list.unlift(call_entry);
            entry = list.next[call_entry];
        }
    }
}

/// Call and return entries in time order, as a doubly linked list in arrays.
/// Index 0 is the head sentinel and the last index the tail sentinel.
struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Index into the checked ops of the entry's operation.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// Return at +infinity (unknown outcome).
    infinite: Vec<bool>,
    /// For a call entry, its return entry.
    partner: Vec<usize>,
}

impl EntryList {
    fn new<O>(ops: &[TimedOp<O>]) -> EntryList {
        // (is infinite, time, calls before returns at equal times, op, is call)
        // Putting calls first at equal times treats touching operations as
        // concurrent, the permissive reading of an ambiguous clock.
        let mut order: Vec<(bool, u64, u8, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((false, op.call, 0, i, true));
            match op.ret {
                Some(ret) => order.push((false, ret.max(op.call), 1, i, false)),
                None => order.push((true, u64::MAX, 1, i, false)),
            }
        }
        order.sort_unstable();

        let len = order.len() + 2;
        let mut list = EntryList {
            next: (1..=len).collect(),
            prev: (0..len).map(|i| i.saturating_sub(1)).collect(),
            op: vec![usize::MAX; len],
            is_call: vec![false; len],
            infinite: vec![false; len],
            partner: vec![usize::MAX; len],
        };
        let mut call_entry = vec![usize::MAX; ops.len()];
        let mut return_entry = vec![usize::MAX; ops.len()];
        for (pos, &(infinite, _, _, op, is_call)) in order.iter().enumerate() {
            let e = pos + 1;
            list.op[e] = op;
            list.is_call[e] = is_call;
            list.infinite[e] = infinite;
            if is_call {
                call_entry[op] = e;
            } else {
                return_entry[op] = e;
            }
        }
        for op in 0..ops.len() {
            list.partner[call_entry[op]] = return_entry[op];
        }
        list
    }

    fn tail(&self) -> usize {
        self.next.len() - 1
    }

    /// Removes a call entry and its return from the list.
    fn lift(&mut self, call: usize) {
        let ret = self.partner[call];
        for e in [call, ret] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = n;
            self.prev[n] = p;
        }
    }

    /// Undoes `lift`, relinking in reverse order so each entry's saved
    /// neighbours are valid again when it is restored.
    fn unlift(&mut self, call: usize) {
        let ret = self.partner[call];
        for e in [ret, call] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = e;
            self.prev[n] = e;
        }
    }
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn clear_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] &= !(1 << (i % 64));
}

/// Set of explored (linearized bitset, state) configurations.
///
/// Keyed by a precomputed 64-bit hash so that a lookup that hits (the common
/// case in a pruned search) allocates nothing; colliding entries share a
/// bucket and are compared in full.
struct Cache<S> {
    buckets: HashMap<u64, Vec<CacheEntry<S>>, BuildHasherDefault<PrehashedHasher>>,
    len: usize,
    /// Set when an insertion was refused because the limit was reached.
    full: bool,
}

/// A linearized-operations bitset and the model state it led to.
type CacheEntry<S> = (Box<[u64]>, S);

impl<S> Default for Cache<S> {
    fn default() -> Self {
        Cache {
            buckets: HashMap::default(),
            len: 0,
            full: false,
        }
    }
}

impl<S: Hash + Eq + Clone> Cache<S> {
    /// Inserts the configuration; `false` if it was already present or the
    /// cache is at `max_entries` (then `full` is set).
    fn insert(&mut self, bits: &[u64], state: &S, max_entries: Option<usize>) -> bool {
        let mut hasher = FxHasher::default();
        bits.hash(&mut hasher);
        state.hash(&mut hasher);
        let bucket = self.buckets.entry(hasher.finish()).or_default();
        if bucket.iter().any(|(b, s)| **b == *bits && s == state) {
            return false;
        }
        if max_entries.is_some_and(|max| self.len >= max) {
            self.full = true;
            return false;
        }
        bucket.push((bits.into(), state.clone()));
        self.len += 1;
        true
    }
}

/// A fast non-cryptographic hasher (the multiply-rotate scheme used by
/// rustc's FxHash) with a final avalanche, for cache keys. Histories are not
/// adversarial, so SipHash's flooding resistance is not needed.
#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // murmur3's fmix64, so every bit of the key affects the bucket index.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Passes an already mixed u64 key through unchanged.
#[derive(Default)]
struct PrehashedHasher {
    hash: u64,
}

impl Hasher for PrehashedHasher {
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("the cache is only keyed by u64 hashes");
    }
    fn write_u64(&mut self, i: u64) {
        self.hash = i;
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpKind;

    /// Builds a history from lines `PROCESS TYPE F [VALUE...]` with an
    /// optional `@KEY` suffix: `0 invoke cas 1 4`, `1 ok read nil`,
    /// `2 invoke write 3 @a`. One value is an integer or `nil`; two are a
    /// CAS pair.
    fn hist(text: &str) -> Vec<Op> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|line| {
                let mut tokens: Vec<&str> = line.split_whitespace().collect();
                let key = match tokens.last() {
                    Some(t) if t.starts_with('@') => {
                        let k = Key::Str(t[1..].to_string());
                        tokens.pop();
                        Some(k)
                    }
                    _ => None,
                };
                let process = tokens[0].parse().unwrap();
                let kind = match tokens[1] {
                    "invoke" => OpKind::Invoke,
                    "ok" => OpKind::Ok,
                    "fail" => OpKind::Fail,
                    "info" => OpKind::Info,
                    t => panic!("bad type {t}"),
                };
                let f = match tokens[2] {
                    "read" => F::Read,
                    "write" => F::Write,
                    "cas" => F::Cas,
                    t => panic!("bad f {t}"),
                };
                let int = |t: &str| t.parse::<i64>().unwrap();
                let value = match &tokens[3..] {
                    [] | ["nil"] => Value::Nil,
                    [v] => Value::Int(int(v)),
                    [a, b] => Value::Pair(int(a), int(b)),
                    other => panic!("bad value {other:?}"),
                };
                let mut op = Op::new(process, kind, f, value);
                op.key = key;
                op
            })
            .collect()
    }

    fn check(text: &str) -> Verdict {
        check_cas_history(&hist(text), &Budget::with_ms(5_000)).unwrap()
    }

    fn assert_valid(text: &str) {
        let v = check(text);
        assert_eq!(v, Verdict::Linearizable, "expected linearizable:\n{text}");
    }

    /// Asserts a definite "not linearizable" and returns the stuck op's id.
    fn assert_invalid(text: &str) -> usize {
        match check(text) {
            Verdict::NotLinearizable { stuck_op, .. } => stuck_op,
            v => panic!("expected not linearizable, got {v:?}:\n{text}"),
        }
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        assert_valid("");
        assert_valid(
            "0 invoke read nil\n0 ok read nil\n\
             0 invoke write 1\n0 ok write 1\n\
             1 invoke cas 1 2\n1 ok cas 1 2\n\
             1 invoke read\n1 ok read 2",
        );
    }

    #[test]
    fn stale_read_after_completed_write() {
        let text = "0 invoke write 1\n0 ok write 1\n\
                    0 invoke write 2\n0 ok write 2\n\
                    1 invoke read\n1 ok read 1";
        // The stale read (invoked at event 4) is the op that cannot fit.
        assert_eq!(assert_invalid(text), 4);
        // Control: the same read concurrent with the second write is fine.
        assert_valid(
            "0 invoke write 1\n0 ok write 1\n\
             0 invoke write 2\n1 invoke read\n1 ok read 1\n0 ok write 2",
        );
    }

    #[test]
    fn read_of_a_value_never_written() {
        assert_invalid("0 invoke write 1\n0 ok write 1\n1 invoke read\n1 ok read 5");
        // Even concurrent with every write, 5 was never written.
        assert_invalid("0 invoke write 1\n1 invoke read\n1 ok read 5\n0 ok write 1");
        // Reading nil before any write is fine; reading nil after one is not.
        assert_valid("1 invoke read\n1 ok read nil\n0 invoke write 1\n0 ok write 1");
    }

    #[test]
    fn lost_write() {
        // An acknowledged write vanishes: a read that starts after it
        // completed still sees the initial value.
        assert_invalid("0 invoke write 1\n0 ok write 1\n1 invoke read\n1 ok read nil");
        // Two acknowledged concurrent writes, then the value flips back to the
        // one that must have been overwritten.
        assert_invalid(
            "0 invoke write 1\n1 invoke write 2\n0 ok write 1\n1 ok write 2\n\
             2 invoke read\n2 ok read 2\n2 invoke read\n2 ok read 1",
        );
    }

    #[test]
    fn successful_cas_from_a_value_that_was_not_current() {
        assert_invalid("0 invoke write 1\n0 ok write 1\n1 invoke cas 2 3\n1 ok cas 2 3");
        // Two sequential CASes from the same value cannot both succeed.
        assert_invalid(
            "0 invoke write 1\n0 ok write 1\n\
             1 invoke cas 1 2\n1 ok cas 1 2\n\
             2 invoke cas 1 3\n2 ok cas 1 3",
        );
        // Nor can two concurrent ones.
        assert_invalid(
            "0 invoke write 1\n0 ok write 1\n\
             1 invoke cas 1 2\n2 invoke cas 1 3\n1 ok cas 1 2\n2 ok cas 1 3",
        );
        // Control: a CAS that failed against nil, then succeeds once 0 is written.
        assert_valid("1 invoke cas 0 1\n1 fail cas 0 1\n0 invoke write 0\n0 ok write 0\n1 invoke cas 0 1\n1 ok cas 0 1");
    }

    #[test]
    fn concurrent_ops_linearizable_in_only_one_order() {
        // Concurrent writes of 1 and 2; the read of 1 afterwards forces
        // write 2 before write 1.
        let base = "0 invoke write 1\n1 invoke write 2\n0 ok write 1\n1 ok write 2\n\
                    2 invoke read\n2 ok read 1\n";
        assert_valid(base);
        // A CAS 1->3 concurrent with a read of 1 and one of 3: the only order
        // is read 1, cas, read 3.
        assert_valid(
            "0 invoke write 1\n0 ok write 1\n\
             1 invoke cas 1 3\n2 invoke read\n3 invoke read\n\
             3 ok read 3\n2 ok read 1\n1 ok cas 1 3",
        );
        // A later read of 2 would need the opposite order as well.
        assert_invalid(&format!("{base}3 invoke read\n3 ok read 2"));
    }

    #[test]
    fn unknown_write_that_must_have_taken_effect() {
        // Only the timed-out write can explain the later read of 7.
        assert_valid("0 invoke write 7\n0 info write 7\n1 invoke read\n1 ok read 7");
        // Same with a write that never completes at all.
        assert_valid("0 invoke write 7\n1 invoke read\n1 ok read 7");
        // An info CAS that must have happened: read 2 needs cas 1->2.
        assert_valid(
            "0 invoke write 1\n0 ok write 1\n1 invoke cas 1 2\n1 info cas 1 2\n2 invoke read\n2 ok read 2",
        );
        // It can only take effect after its invocation: the read of 7 came
        // before the write was even invoked.
        assert_invalid("1 invoke read\n1 ok read 7\n0 invoke write 7\n0 info write 7");
    }

    #[test]
    fn unknown_ops_must_not_be_assumed_to_have_happened() {
        // The info CAS 1->2 must not be applied: cas 1->3 then needs 1.
        // A checker that forces every unknown op into the linearization
        // would get stuck on the CAS at the end.
        assert_valid(
            "0 invoke write 1\n0 ok write 1\n\
             1 invoke cas 1 2\n1 info cas 1 2\n\
             2 invoke cas 1 3\n2 ok cas 1 3\n\
             2 invoke read\n2 ok read 3",
        );
        // An info write left out; reads keep seeing the old value.
        assert_valid(
            "0 invoke write 1\n0 ok write 1\n1 invoke write 2\n1 info write 2\n\
             2 invoke read\n2 ok read 1\n2 invoke read\n2 ok read 1",
        );
        // But once observed it cannot un-happen.
        assert_invalid(
            "0 invoke write 1\n0 ok write 1\n1 invoke write 2\n1 info write 2\n\
             2 invoke read\n2 ok read 2\n2 invoke read\n2 ok read 1",
        );
        // A timed-out read observed nothing and constrains nothing.
        assert_valid("0 invoke write 1\n0 ok write 1\n1 invoke read\n1 info read\n1 invoke read\n1 ok read 1");
    }

    #[test]
    fn failed_op_that_would_explain_a_read_is_ignored() {
        assert_invalid("0 invoke write 1\n0 fail write 1\n1 invoke read\n1 ok read 1");
        assert_invalid(
            "0 invoke write 1\n0 ok write 1\n1 invoke cas 1 2\n1 fail cas 1 2\n2 invoke read\n2 ok read 2",
        );
        // Control: the same histories with `info` instead of `fail` are valid.
        assert_valid("0 invoke write 1\n0 info write 1\n1 invoke read\n1 ok read 1");
    }

    #[test]
    fn process_reinvoking_after_info_is_handled() {
        // Process 0 times out on write 5, then reads 5: the hung write may
        // still have happened, so this is linearizable.
        assert_valid("0 invoke write 5\n0 info write 5\n0 invoke read\n0 ok read 5");
    }

    #[test]
    fn keys_are_checked_independently() {
        // As one register this would be invalid (read a=1 after b=2 was
        // written); per key it is fine.
        let text = "0 invoke write 1 @a\n0 ok write 1 @a\n\
                    1 invoke write 2 @b\n1 ok write 2 @b\n\
                    2 invoke read @a\n2 ok read 1 @a\n\
                    2 invoke read @b\n2 ok read 2 @b";
        assert_valid(text);
        let unkeyed: Vec<Op> = hist(text)
            .into_iter()
            .map(|mut o| {
                o.key = None;
                o
            })
            .collect();
        assert!(!check_cas_history(&unkeyed, &Budget::default())
            .unwrap()
            .is_linearizable());

        // A violation on one key is reported with that key.
        let bad = format!("{text}\n3 invoke read @b\n3 ok read 7 @b");
        match check(&bad) {
            Verdict::NotLinearizable {
                key,
                stuck_op,
                message,
                ..
            } => {
                assert_eq!(key, Some(Key::Str("b".into())));
                assert_eq!(stuck_op, 8);
                assert!(message.contains("key \"b\""), "{message}");
            }
            v => panic!("expected not linearizable, got {v:?}"),
        }
    }

    #[test]
    fn counterexample_names_the_longest_prefix() {
        let text = "0 invoke write 1\n0 ok write 1\n\
                    0 invoke write 2\n0 ok write 2\n\
                    1 invoke read\n1 ok read 1";
        match check(text) {
            Verdict::NotLinearizable {
                longest_prefix,
                stuck_op,
                state_after_prefix,
                ..
            } => {
                assert_eq!(longest_prefix, vec![0, 2]);
                assert_eq!(stuck_op, 4);
                assert_eq!(state_after_prefix, "Some(2)");
            }
            v => panic!("expected not linearizable, got {v:?}"),
        }
    }

    /// Many concurrent unknown writes followed by a read nobody wrote: the
    /// search space is large, so small budgets must run out.
    fn hard_history() -> Vec<Op> {
        let mut text = String::new();
        for p in 0..30 {
            text.push_str(&format!("{p} invoke write {p}\n"));
        }
        for p in 0..30 {
            text.push_str(&format!("{p} info write {p}\n"));
        }
        for p in 100..140 {
            text.push_str(&format!(
                "{p} invoke cas {} {}\n{p} ok cas {} {}\n",
                p - 100,
                p - 99,
                p - 100,
                p - 99
            ));
        }
        text.push_str("200 invoke read\n200 ok read 1000\n");
        hist(&text)
    }

    #[test]
    fn exhausted_budget_is_unknown_never_linearizable() {
        let h = hard_history();
        let steps = Budget {
            max_steps: Some(100),
            ..Budget::unlimited()
        };
        assert!(check_cas_history(&h, &steps).unwrap().is_unknown());
        let time = Budget {
            budget_ms: Some(0),
            ..Budget::unlimited()
        };
        assert!(check_cas_history(&h, &time).unwrap().is_unknown());
        let memory = Budget {
            max_cache_entries: Some(10),
            ..Budget::unlimited()
        };
        assert!(check_cas_history(&h, &memory).unwrap().is_unknown());
        // A valid history under a tiny budget is still unknown, not valid.
        let valid = hist("0 invoke write 1\n0 ok write 1\n1 invoke read\n1 ok read 1");
        let one_step = Budget {
            max_steps: Some(1),
            ..Budget::unlimited()
        };
        assert!(check_cas_history(&valid, &one_step).unwrap().is_unknown());
    }

    /// Reference oracle: tries every subset of the unknown-outcome ops and
    /// every real-time-respecting order of the chosen ops. Exponential, so
    /// only for tiny histories.
    fn brute_force(ops: &[Operation]) -> bool {
        let ops: Vec<&Operation> = ops
            .iter()
            .filter(|o| {
                o.outcome == Outcome::Ok || (o.outcome == Outcome::Unknown && o.f != F::Read)
            })
            .collect();
        let unknown: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].outcome == Outcome::Unknown)
            .collect();
        // `a` must precede `b` when `a` returned before `b` was invoked.
        let precedes =
            |a: &Operation, b: &Operation| a.return_index.is_some_and(|r| r < b.call_index);
        fn orders(
            ops: &[&Operation],
            chosen: &[usize],
            used: &mut Vec<bool>,
            state: Option<i64>,
            precedes: &dyn Fn(&Operation, &Operation) -> bool,
        ) -> bool {
            if chosen.iter().all(|&i| used[i]) {
                return true;
            }
            for &i in chosen {
                let ready = !used[i]
                    && chosen
                        .iter()
                        .all(|&j| used[j] || j == i || !precedes(ops[j], ops[i]));
                if !ready {
                    continue;
                }
                if let Some(next) = CasRegister.step(&state, ops[i]) {
                    used[i] = true;
                    let found = orders(ops, chosen, used, next, precedes);
                    used[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        (0u32..1 << unknown.len()).any(|mask| {
            let chosen: Vec<usize> = (0..ops.len())
                .filter(|&i| match unknown.iter().position(|&u| u == i) {
                    Some(bit) => mask & (1 << bit) != 0,
                    None => true,
                })
                .collect();
            orders(&ops, &chosen, &mut vec![false; ops.len()], None, &precedes)
        })
    }

    /// xorshift64*: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// A random concurrent history over 3 processes and values 0..=2, with
    /// read results drawn at random so that both verdicts occur.
    fn random_history(rng: &mut Rng, ops_wanted: usize) -> Vec<Op> {
        let mut events = Vec::new();
        let mut pending: Vec<Option<(F, Value)>> = vec![None; 3];
        let mut next_process = [0u64, 1, 2]; // a process that got `info` is replaced
        let mut invoked = 0;
        while invoked < ops_wanted || pending.iter().any(Option::is_some) {
            let slot = rng.below(3) as usize;
            let p = next_process[slot];
            match pending[slot] {
                None if invoked < ops_wanted => {
                    let v = rng.below(3) as i64;
                    let (f, value) = match rng.below(3) {
                        0 => (F::Read, Value::Nil),
                        1 => (F::Write, Value::Int(v)),
                        _ => (F::Cas, Value::Pair(v, rng.below(3) as i64)),
                    };
                    events.push(Op::new(p, OpKind::Invoke, f, value));
                    pending[slot] = Some((f, value));
                    invoked += 1;
                }
                None => {}
                Some((f, value)) => {
                    let kind = match rng.below(10) {
                        0 => OpKind::Info,
                        1 | 2 => OpKind::Fail,
                        _ => OpKind::Ok,
                    };
                    let value = match (f, kind) {
                        (F::Read, OpKind::Ok) => match rng.below(4) {
                            3 => Value::Nil,
                            v => Value::Int(v as i64),
                        },
                        _ => value,
                    };
                    // Leave a few operations without any completion.
                    if kind == OpKind::Info && rng.below(2) == 0 {
                        next_process[slot] += 3;
                        pending[slot] = None;
                        continue;
                    }
                    events.push(Op::new(p, kind, f, value));
                    if kind == OpKind::Info {
                        next_process[slot] += 3;
                    }
                    pending[slot] = None;
                }
            }
        }
        events
    }

    #[test]
    fn agrees_with_brute_force_on_random_histories() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut valid, mut invalid) = (0, 0);
        for case in 0..5000 {
            let history = random_history(&mut rng, 2 + case % 9);
            let ops = pair_operations(&history).unwrap();
            let expected = brute_force(&ops);
            let got = check_operations(&CasRegister, &ops, &Budget::unlimited());
            assert_eq!(got.as_bool(), Some(expected), "case {case}: {history:#?}");
            if expected {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        // The generator must exercise both verdicts for this to mean much.
        assert!(
            valid > 300 && invalid > 300,
            "valid {valid}, invalid {invalid}"
        );
    }

    #[test]
    fn other_models_plug_in() {
        /// A grow-only set of small integers, as a bitmask: add(x) / read(mask).
        struct SmallSet;
        enum SetOp {
            Add(u32),
            Read(u64),
        }
        impl Model for SmallSet {
            type Op = SetOp;
            type State = u64;
            fn init(&self) -> u64 {
                0
            }
            fn step(&self, s: &u64, op: &SetOp) -> Option<u64> {
                match op {
                    SetOp::Add(x) => Some(s | 1 << x),
                    SetOp::Read(seen) => (seen == s).then_some(*s),
                }
            }
        }
        let t = |id, call, ret, op| TimedOp { id, call, ret, op };
        // add 1 and add 2 concurrent; a read of {2} in between is fine...
        let ok = [
            t(0, 0, Some(5), SetOp::Add(1)),
            t(1, 1, Some(4), SetOp::Add(2)),
            t(2, 2, Some(3), SetOp::Read(0b100)),
        ];
        assert!(check_timed(&SmallSet, &ok, &Budget::default()).is_linearizable());
        // ...but a later read missing element 1 is not.
        let bad = [
            t(0, 0, Some(1), SetOp::Add(1)),
            t(1, 2, Some(3), SetOp::Read(0b100)),
        ];
        assert!(!check_timed(&SmallSet, &bad, &Budget::default()).is_linearizable());
    }
}
