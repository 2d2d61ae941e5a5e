//! The developer-signature verdicts of an install's packages: 4 bytes a package.
//!
//! A download worker checks a package's developer signature as its file arrives; what no
//! worker checked, the install checks before it unpacks the package. The verdict (refused,
//! no developer signature, or the key that verified it) is kept until the install reaches
//! the package. A bootstrap of 10,000 packages keeps 10,000 of them: as a `OnceLock` of an
//! optional key each they were 16 bytes; here they are a number each, the keys (few: one a
//! developer) in a table, and the refusals' reasons aside (a refusal ends the install).

use feeds::usign::Fingerprint;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Not judged yet.
const UNJUDGED: u32 = 0;
/// Refused; the reason is in [`Verdicts::refusals`].
const REFUSED: u32 = 1;
/// No developer signed the package (and none had to).
const UNSIGNED: u32 = 2;
/// Verified by key `k` of [`Verdicts::keys`]: `KEYED + k`.
const KEYED: u32 = 3;

/// One verdict per package, judged once (the first verdict stored stands).
pub(crate) struct Verdicts {
    states: Vec<AtomicU32>,
    keys: Mutex<Vec<Fingerprint>>,
    refusals: Mutex<BTreeMap<usize, String>>,
}

impl Verdicts {
    /// `n` packages, none judged.
    pub(crate) fn new(n: usize) -> Verdicts {
        Verdicts {
            states: (0..n).map(|_| AtomicU32::new(UNJUDGED)).collect(),
            keys: Mutex::default(),
            refusals: Mutex::default(),
        }
    }

    /// The verdict on package `i`: judged by `judge` unless it was already. `Ok(Some(key))`:
    /// `key` verified it; `Ok(None)`: no developer signed it; `Err(reason)`: refused.
    ///
    /// Two threads asking at once may both judge (the install reaching a package its worker
    /// is checking); the first verdict stored is the one both return.
    pub(crate) fn get_or_judge(
        &self,
        i: usize,
        judge: impl FnOnce() -> Result<Option<Fingerprint>, String>,
    ) -> Result<Option<Fingerprint>, String> {
        let mut state = self.states[i].load(Ordering::Acquire);
        if state == UNJUDGED {
            let judged = match judge() {
                Ok(None) => UNSIGNED,
                Ok(Some(key)) => KEYED + self.key_number(key),
                Err(reason) => {
                    lock(&self.refusals).entry(i).or_insert(reason);
                    REFUSED
                }
            };
            state = match self.states[i].compare_exchange(
                UNJUDGED,
                judged,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => judged,
                Err(first) => first,
            };
        }
        match state {
            UNSIGNED => Ok(None),
            REFUSED => Err(lock(&self.refusals).get(&i).cloned().unwrap_or_default()),
            keyed => Ok(Some(lock(&self.keys)[(keyed - KEYED) as usize])),
        }
    }

    /// The number of `key` in the table, added when new.
    fn key_number(&self, key: Fingerprint) -> u32 {
        let mut keys = lock(&self.keys);
        let at = match keys.iter().position(|k| *k == key) {
            Some(at) => at,
            None => {
                keys.push(key);
                keys.len() - 1
            }
        };
        u32::try_from(at).expect("fewer than 2^32 developer keys")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Whatever a panicking thread left is whole: an entry is added in one step.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Fingerprint {
        format!("{:016x}", u64::from(b)).parse().unwrap()
    }

    #[test]
    fn each_verdict_is_judged_once_and_kept() {
        let v = Verdicts::new(4);
        assert_eq!(v.get_or_judge(0, || Ok(Some(key(1)))), Ok(Some(key(1))));
        assert_eq!(v.get_or_judge(1, || Ok(None)), Ok(None));
        assert_eq!(
            v.get_or_judge(2, || Err("bad signature".into())),
            Err("bad signature".into())
        );
        assert_eq!(v.get_or_judge(3, || Ok(Some(key(2)))), Ok(Some(key(2))));
        // Judged: a second judge is not asked.
        let asked = |_| -> Result<Option<Fingerprint>, String> { panic!("judged twice") };
        for i in 0..4 {
            let again = v.get_or_judge(i, || asked(i));
            assert_eq!(again.is_ok(), i != 2);
        }
        assert_eq!(v.get_or_judge(0, || asked(0)), Ok(Some(key(1))));
        assert_eq!(v.get_or_judge(2, || asked(2)), Err("bad signature".into()));
        assert_eq!(lock(&v.keys).len(), 2);
    }

    #[test]
    fn the_first_verdict_stored_stands_between_threads() {
        let v = Verdicts::new(64);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let v = &v;
                s.spawn(move || {
                    for i in 0..64 {
                        let _ = v.get_or_judge(i, || Ok(Some(key(t))));
                    }
                });
            }
        });
        let first: Vec<_> = (0..64)
            .map(|i| v.get_or_judge(i, || Ok(None)).unwrap())
            .collect();
        assert!(first.iter().all(Option::is_some));
        for (i, first) in first.iter().enumerate() {
            assert_eq!(v.get_or_judge(i, || Err("late".into())).unwrap(), *first);
        }
    }
}
