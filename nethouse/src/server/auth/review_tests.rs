use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::server::auth::review_cache::tests::jwt;
use crate::server::auth::{Access, Auth, Denied, Role, Scope};

const USER: &str = "system:serviceaccount:nethouse-system:nethouse-cni";

fn account() -> ServiceAccount {
    "nethouse-system/nethouse-cni".parse().unwrap()
}

fn of_node(node: &str) -> Reviewed {
    Reviewed {
        authenticated: true,
        username: USER.into(),
        audiences: vec!["nethouse".into()],
        node_names: vec![node.into()],
        error: String::new(),
    }
}

/// Answers every review with `answer` after `delay`, counting the calls.
struct Fake {
    calls: AtomicUsize,
    answer: Mutex<Result<Reviewed, String>>,
    delay: Duration,
}

struct Shared(Arc<Fake>);

impl Reviewer for Shared {
    fn review<'a>(&'a self, _token: &'a str, audience: &'a str) -> ReviewFuture<'a> {
        assert_eq!(audience, "nethouse");
        Box::pin(async move {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.0.delay).await;
            lock(&self.0.answer).clone()
        })
    }
}

fn fake(answer: Result<Reviewed, String>, delay: Duration) -> (Arc<Fake>, NodeReview) {
    let f = Arc::new(Fake {
        calls: AtomicUsize::new(0),
        answer: Mutex::new(answer),
        delay,
    });
    let review = NodeReview::new(Box::new(Shared(f.clone())), &account(), "nethouse");
    (f, review)
}

fn calls(f: &Fake) -> usize {
    f.calls.load(Ordering::SeqCst)
}

fn in_an_hour() -> Option<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Some(now.as_secs() + 3600)
}

#[test]
fn decide_table() {
    let refused = |r: Reviewed, has: &str| {
        let e = decide(&r, USER, "nethouse").unwrap_err();
        assert!(e.contains(has), "{r:?}: {e}");
    };
    assert_eq!(
        decide(&of_node("z1-a"), USER, "nethouse").unwrap(),
        "z1-a".into()
    );
    refused(
        Reviewed {
            authenticated: false,
            error: "token has expired".into(),
            ..of_node("z1-a")
        },
        "did not authenticate the token: token has expired",
    );
    refused(
        Reviewed {
            username: "system:serviceaccount:default:default".into(),
            ..of_node("z1-a")
        },
        r#"is "system:serviceaccount:default:default"'s, not the node ServiceAccount"#,
    );
    refused(
        Reviewed {
            audiences: vec!["https://kubernetes.default.svc".into()],
            ..of_node("z1-a")
        },
        r#"not meant for audience "nethouse""#,
    );
    refused(
        Reviewed {
            audiences: vec![],
            ..of_node("z1-a")
        },
        "audience",
    );
    refused(
        Reviewed {
            node_names: vec![],
            ..of_node("z1-a")
        },
        "names no node",
    );
    refused(
        Reviewed {
            node_names: vec!["a".into(), "b".into()],
            ..of_node("z1-a")
        },
        "not one node name",
    );
    refused(of_node("a/b"), "not one node name");
}

#[test]
fn service_accounts_parse() {
    let sa = account();
    assert_eq!(sa.username(), USER);
    assert_eq!(sa.to_string(), "nethouse-system/nethouse-cni");
    for bad in ["nethouse-cni", "/x", "x/", "a:b/c", "a/b/c"] {
        assert!(bad.parse::<ServiceAccount>().is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_node_token_is_reviewed_once_and_then_kept() {
    let (f, review) = fake(Ok(of_node("z1-a")), Duration::ZERO);
    let token = jwt(in_an_hour(), "a");
    for _ in 0..3 {
        assert_eq!(review.node_of(&token).await, Ok("z1-a".into()));
    }
    assert_eq!(calls(&f), 1);
    assert_eq!(review.cache_hits.get(), 2);
    // Another token is another review.
    review.node_of(&jwt(in_an_hour(), "b")).await.unwrap();
    assert_eq!(calls(&f), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_with_one_token_share_one_review() {
    let (f, review) = fake(Ok(of_node("z1-a")), Duration::from_millis(100));
    let review = Arc::new(review);
    let token = jwt(in_an_hour(), "a");
    let mut calls_made = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (review, token) = (review.clone(), token.clone());
        calls_made.spawn(async move { review.node_of(&token).await });
    }
    while let Some(r) = calls_made.join_next().await {
        assert_eq!(r.unwrap(), Ok("z1-a".into()));
    }
    assert_eq!(calls(&f), 1);
    assert!(lock(&review.in_flight).is_empty(), "nothing left in flight");
}

#[tokio::test]
async fn refusals_are_kept_failures_are_not() {
    let (f, review) = fake(
        Ok(Reviewed {
            authenticated: false,
            ..Default::default()
        }),
        Duration::ZERO,
    );
    let token = jwt(in_an_hour(), "a");
    for _ in 0..2 {
        assert!(matches!(
            review.node_of(&token).await,
            Err(ReviewDenied::Refused(why)) if why.contains("did not authenticate")
        ));
    }
    assert_eq!(calls(&f), 1, "the refusal was kept");

    *lock(&f.answer) = Err("connection refused".into());
    let other = jwt(in_an_hour(), "b");
    for _ in 0..2 {
        assert!(matches!(
            review.node_of(&other).await,
            Err(ReviewDenied::Unavailable(why)) if why.contains("connection refused")
        ));
    }
    assert_eq!(calls(&f), 3, "no answer is not a verdict: asked again");
}

#[tokio::test]
async fn what_is_no_jwt_or_expired_is_not_kept() {
    let (f, review) = fake(Ok(of_node("z1-a")), Duration::ZERO);
    assert_eq!(
        review.node_of("node-token-0123456789abcdef").await,
        Err(ReviewDenied::Refused("unknown token".into()))
    );
    assert_eq!(calls(&f), 0, "a string that is no JWT costs no review");
    let expired = jwt(Some(1), "old");
    for _ in 0..2 {
        review.node_of(&expired).await.unwrap();
    }
    assert_eq!(
        calls(&f),
        2,
        "a verdict is not kept past the token's expiry"
    );
}

#[tokio::test]
async fn metrics_count_reviews_by_result() {
    let (f, review) = fake(Ok(of_node("z1-a")), Duration::ZERO);
    let token = jwt(in_an_hour(), "a");
    review.node_of(&token).await.unwrap();
    review.node_of(&token).await.unwrap();
    *lock(&f.answer) = Err("down".into());
    let _ = review.node_of(&jwt(in_an_hour(), "b")).await;
    let mut registry = Registry::with_prefix("nethouse");
    review.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        r#"nethouse_token_reviews_total{result="accepted"} 1"#,
        r#"nethouse_token_reviews_total{result="refused"} 0"#,
        r#"nethouse_token_reviews_total{result="error"} 1"#,
        "nethouse_token_review_cache_hits_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn auth_takes_reviewed_tokens_as_bound_node_credentials() {
    let (f, review) = fake(Ok(of_node("z1-a")), Duration::ZERO);
    let auth = Auth::parse("controller ctrl-token-0123456789\nnode:z1-b b-token-0123456789\n")
        .unwrap()
        .with_node_review(review)
        .unwrap();
    let token = jwt(in_an_hour(), "a");
    let bearer = format!("Bearer {token}");
    assert_eq!(
        auth.check(Access::Only(Role::Node), Some(&bearer)).await,
        Ok(Scope::Node("z1-a".into()))
    );
    assert_eq!(
        auth.check(Access::Read, Some(&bearer)).await,
        Ok(Scope::Node("z1-a".into()))
    );
    assert!(matches!(
        auth.check(Access::Only(Role::Controller), Some(&bearer))
            .await,
        Err(Denied::Forbidden {
            role: Role::Node,
            ..
        })
    ));
    // Tokens of the file are decided without a review.
    assert_eq!(
        auth.check(Access::Only(Role::Node), Some("Bearer b-token-0123456789"))
            .await,
        Ok(Scope::Node("z1-b".into()))
    );
    assert_eq!(
        auth.check(Access::Read, Some("Bearer not-a-known-token-0123"))
            .await,
        Err(Denied::Unauthenticated("unknown token".into()))
    );
    assert_eq!(calls(&f), 1);
    *lock(&f.answer) = Err("down".into());
    let other = format!("Bearer {}", jwt(in_an_hour(), "b"));
    assert!(matches!(
        auth.check(Access::Read, Some(&other)).await,
        Err(Denied::Unavailable(_))
    ));
    assert!(!format!("{auth:?}").contains(&token));
    assert!(
        Auth::Disabled
            .with_node_review(fake(Ok(of_node("x")), Duration::ZERO).1)
            .is_err()
    );
}
