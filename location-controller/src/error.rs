//! The crate's one error type. It lives apart from the code that raises it so the reconcile,
//! the status writes and the sweep can all return it without importing one another.

/// What failed. `PodHoldsIp` and `Retained` are waits, not failures: they keep the finalizer
/// and requeue without counting as errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod {0} still holds its IP; it is released once the pod is gone")]
    PodHoldsIp(String),
    #[error("{location} is retained until {until}")]
    Retained {
        location: String,
        until: String,
        until_ms: i64,
    },
    #[error("reading {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("releasing the IP of {owner} through NetHouse: {source}")]
    Release {
        owner: String,
        #[source]
        source: nethouse_api::ClientError,
    },
    #[error("listing this cluster's fixed leases in NetHouse: {0}")]
    ListLeases(#[source] nethouse_api::ClientError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

pub(crate) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

impl Error {
    /// The error an Apply or Cleanup returned through the finalizer; otherwise `self`.
    pub fn inner(&self) -> &Error {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Finalizer(e) => match &**e {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e,
                _ => self,
            },
            e => e,
        }
    }

    /// The variant that failed, as a short fixed metric label. The finalizer's wrapping is
    /// looked through: `finalizer` means adding or removing the finalizer itself failed.
    pub fn kind(&self) -> &'static str {
        match self.inner() {
            Error::PodHoldsIp(_) => "pod_holds_ip",
            Error::Retained { .. } => "retained",
            Error::Kube { .. } => "kube",
            Error::Release { .. } => "release",
            Error::ListLeases(_) => "list_leases",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// Waiting for the pod to go or a retention to end, not failing.
    pub fn is_wait(&self) -> bool {
        matches!(self.inner(), Error::PodHoldsIp(_) | Error::Retained { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as F;

    fn kube() -> Error {
        kube_err("pod default/redis-0")(kube::Error::LinesCodecMaxLineLengthExceeded)
    }

    fn nethouse() -> nethouse_api::ClientError {
        nethouse_api::ClientError::config(nethouse_api::Setting::Other, "test")
    }

    fn wrapped(f: F<Error>) -> Error {
        Error::Finalizer(Box::new(f))
    }

    #[test]
    fn kind_names_the_variant_through_the_finalizer() {
        let retained = || Error::Retained {
            location: "default/redis-3".into(),
            until: "2026-11-26T05:00:00Z".into(),
            until_ms: 0,
        };
        let cases = [
            (
                Error::PodHoldsIp("default/redis-0".into()),
                "pod_holds_ip",
                true,
            ),
            (retained(), "retained", true),
            (kube(), "kube", false),
            (wrapped(F::ApplyFailed(kube())), "kube", false),
            (
                wrapped(F::CleanupFailed(Error::Release {
                    owner: "c/default/redis-0".into(),
                    source: nethouse(),
                })),
                "release",
                false,
            ),
            (Error::ListLeases(nethouse()), "list_leases", false),
            (wrapped(F::CleanupFailed(retained())), "retained", true),
            (
                wrapped(F::CleanupFailed(Error::PodHoldsIp("x".into()))),
                "pod_holds_ip",
                true,
            ),
            (
                wrapped(F::AddFinalizer(
                    kube::Error::LinesCodecMaxLineLengthExceeded,
                )),
                "finalizer",
                false,
            ),
            (wrapped(F::UnnamedObject), "finalizer", false),
        ];
        for (err, kind, wait) in cases {
            assert_eq!(err.kind(), kind, "{err}");
            assert_eq!(err.is_wait(), wait, "{err}");
        }
    }
}
