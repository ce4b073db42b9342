//! The [`Reviewer`] that asks the Kubernetes API: a TokenReview (authentication.k8s.io/v1)
//! for the audience NetHouse requires. NetHouse's ServiceAccount needs `create` on
//! `tokenreviews` (cluster-scoped), nothing else.
//!
//! The TokenReview object carries the token, also in the answer (`spec.token`): it is never
//! printed, and only the status is kept.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};

use super::review::{NODE_NAME_EXTRA, ReviewFuture, Reviewed, Reviewer};

pub struct KubeReviewer {
    api: Api<TokenReview>,
}

impl KubeReviewer {
    pub fn new(client: kube::Client) -> Self {
        KubeReviewer {
            api: Api::all(client),
        }
    }
}

impl Reviewer for KubeReviewer {
    fn review<'a>(&'a self, token: &'a str, audience: &'a str) -> ReviewFuture<'a> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: Some(vec![audience.to_string()]),
                },
                ..Default::default()
            };
            let answer = self
                .api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("TokenReview: {e}"))?;
            Ok(reviewed(answer.status.unwrap_or_default()))
        })
    }
}

/// What the decision needs from a TokenReview's status.
fn reviewed(status: TokenReviewStatus) -> Reviewed {
    let user = status.user.unwrap_or_default();
    Reviewed {
        authenticated: status.authenticated.unwrap_or(false),
        username: user.username.unwrap_or_default(),
        audiences: status.audiences.unwrap_or_default(),
        node_names: user
            .extra
            .and_then(|mut extra| extra.remove(NODE_NAME_EXTRA))
            .unwrap_or_default(),
        error: status.error.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_bound_tokens_review_names_its_node() {
        // As kube-apiserver 1.35 answers for a token minted with --bound-object-kind Pod.
        let answer: TokenReview = serde_json::from_str(
            r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "metadata": {"creationTimestamp": null},
                "spec": {"token": "x.y.z", "audiences": ["nethouse"]},
                "status": {"authenticated": true, "audiences": ["nethouse"],
                  "user": {"username": "system:serviceaccount:nethouse-system:nethouse-cni",
                    "uid": "6b1a", "groups": ["system:serviceaccounts"],
                    "extra": {"authentication.kubernetes.io/credential-id": ["JTI=1"],
                      "authentication.kubernetes.io/node-name": ["z1-a"],
                      "authentication.kubernetes.io/node-uid": ["9c2e"],
                      "authentication.kubernetes.io/pod-name": ["nethouse-cni-x"],
                      "authentication.kubernetes.io/pod-uid": ["77aa"]}}}}"#,
        )
        .unwrap();
        assert_eq!(
            reviewed(answer.status.unwrap()),
            Reviewed {
                authenticated: true,
                username: "system:serviceaccount:nethouse-system:nethouse-cni".into(),
                audiences: vec!["nethouse".into()],
                node_names: vec!["z1-a".into()],
                error: String::new(),
            }
        );
        let refused: TokenReview = serde_json::from_str(
            r#"{"spec": {}, "status": {"user": {}, "error": "token has expired"}}"#,
        )
        .unwrap();
        let r = reviewed(refused.status.unwrap());
        assert!(!r.authenticated && r.node_names.is_empty());
        assert_eq!(r.error, "token has expired");
    }
}
