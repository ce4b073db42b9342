//! IPAM behaviour over the in-memory store with a manual clock.

use std::sync::Arc;

use nethouse_api::{
    AllocateRequest, AllocateResponse, Attachment, AttachmentRef, DetachRequest, LeaseFilter,
    LeaseKind, Owner, SubnetSpec,
};

use super::*;
use crate::clock::ManualClock;
use crate::model::lease::{OwnerKey, ValidAllocate, ValidDetach};
use crate::store::memory::MemoryStore;
use crate::store::{Outcome, Store};

pub(crate) const COOLDOWN_MS: u64 = 10_000;

pub(crate) async fn ipam_on(store: MemoryStore, clock: &ManualClock) -> Ipam<MemoryStore> {
    Ipam::load(
        store,
        Arc::new(clock.clone()),
        IpamConfig {
            default_cooldown_ms: COOLDOWN_MS,
        },
    )
    .await
    .unwrap()
}

pub(crate) fn subnet(zone: &str, cidr: &str) -> SubnetSpec {
    SubnetSpec {
        zone: zone.into(),
        cidr: cidr.into(),
        ..Default::default()
    }
}

pub(crate) fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "k".into(),
        namespace: "db".into(),
        pod: pod.into(),
    }
}

pub(crate) fn att(cid: &str, node: &str) -> Attachment {
    Attachment {
        container_id: cid.into(),
        ifname: "eth0".into(),
        node: node.into(),
    }
}

pub(crate) fn fixed(pod: &str, cid: &str, node: &str, zone: &str) -> ValidAllocate {
    ValidAllocate::from_request(AllocateRequest {
        zone: zone.into(),
        kind: LeaseKind::Fixed,
        owner: Some(owner(pod)),
        attachment: att(cid, node),
    })
    .unwrap()
}

pub(crate) fn ephemeral(cid: &str, node: &str, zone: &str) -> ValidAllocate {
    ValidAllocate::from_request(AllocateRequest {
        zone: zone.into(),
        kind: LeaseKind::Ephemeral,
        owner: None,
        attachment: att(cid, node),
    })
    .unwrap()
}

pub(crate) fn del(cid: &str, pod: Option<&str>) -> ValidDetach {
    ValidDetach::from_request(DetachRequest {
        container_id: cid.into(),
        ifname: "eth0".into(),
        owner: pod.map(owner),
    })
    .unwrap()
}

async fn setup(cidr: &str) -> (Ipam<MemoryStore>, ManualClock, MemoryStore) {
    let clock = ManualClock::new(1_000_000);
    let store = MemoryStore::new();
    let ipam = ipam_on(store.clone(), &clock).await;
    ipam.add_subnet(&subnet("z1", cidr)).await.unwrap();
    (ipam, clock, store)
}

fn ip_of(r: &(AllocateResponse, AllocOutcome)) -> std::net::IpAddr {
    r.0.lease.ips[0].ip
}

#[tokio::test]
async fn fixed_pod_gets_the_same_ip_with_a_new_container_on_another_node() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    let first = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    assert_eq!(first.1, AllocOutcome::Created);
    assert_eq!(first.0.ips[0].address, "10.9.0.2/24");
    assert_eq!(first.0.ips[0].gateway, Some("10.9.0.1".parse().unwrap()));
    // n1 died: no DEL ever ran; the pod is recreated on n2 with a new sandbox.
    let again = ipam
        .allocate(fixed("redis-0", "c2", "n2", "z1"))
        .await
        .unwrap();
    assert_eq!(again.1, AllocOutcome::Reattached);
    assert_eq!(ip_of(&again), ip_of(&first));
    assert_eq!(again.0.lease.attachment.unwrap().node, "n2");
    // The same call again is idempotent.
    let same = ipam
        .allocate(fixed("redis-0", "c2", "n2", "z1"))
        .await
        .unwrap();
    assert_eq!(same.1, AllocOutcome::Existing);
    // A late DEL from the dead sandbox must not detach the live one.
    let late = ipam.detach(del("c1", Some("redis-0"))).await.unwrap();
    assert_eq!(late.outcome, "not_attached_here");
    assert!(
        ipam.lease_by_owner(&owner("redis-0"))
            .unwrap()
            .attachment
            .is_some()
    );
    // Another pod never gets that address.
    let other = ipam
        .allocate(fixed("redis-1", "c3", "n1", "z1"))
        .await
        .unwrap();
    assert_ne!(ip_of(&other), ip_of(&first));
}

#[tokio::test]
async fn detach_retains_fixed_and_releases_ephemeral() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    let f = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let e = ipam.allocate(ephemeral("c2", "n1", "z1")).await.unwrap();
    assert_eq!(
        ipam.detach(del("c1", Some("redis-0")))
            .await
            .unwrap()
            .outcome,
        "detached"
    );
    assert_eq!(
        ipam.detach(del("c2", None)).await.unwrap().outcome,
        "released"
    );
    // Idempotent.
    assert_eq!(
        ipam.detach(del("c1", Some("redis-0")))
            .await
            .unwrap()
            .outcome,
        "not_attached_here"
    );
    assert_eq!(
        ipam.detach(del("c2", None)).await.unwrap().outcome,
        "not_found"
    );
    let kept = ipam.lease_by_owner(&owner("redis-0")).unwrap();
    assert_eq!(kept.ips[0].ip, ip_of(&f));
    assert!(kept.attachment.is_none());
    assert!(ipam.lease_by_ip(ip_of(&e)).is_err());
    let s = ipam.subnet("10.9.0.0-24").unwrap();
    assert_eq!(
        (s.usage.attached, s.usage.retained, s.usage.cooling),
        (0, 1, 1)
    );
    // The retained lease comes back on the next ADD.
    let back = ipam
        .allocate(fixed("redis-0", "c9", "n2", "z1"))
        .await
        .unwrap();
    assert_eq!(ip_of(&back), ip_of(&f));
    assert!(ipam.inconsistencies().is_empty());
}

#[tokio::test]
async fn released_ip_waits_for_its_cooldown() {
    let (ipam, clock, _) = setup("10.9.0.0/30").await; // one usable address: .2
    let a = ipam.allocate(ephemeral("c1", "n1", "z1")).await.unwrap();
    assert_eq!(ip_of(&a).to_string(), "10.9.0.2");
    ipam.detach(del("c1", None)).await.unwrap();
    let err = ipam
        .allocate(ephemeral("c2", "n1", "z1"))
        .await
        .unwrap_err();
    match &err {
        IpamError::ZoneExhausted { detail, .. } => {
            assert!(detail.contains("1 cooling down"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    clock.advance_ms(COOLDOWN_MS - 1);
    assert!(ipam.allocate(ephemeral("c2", "n1", "z1")).await.is_err());
    clock.advance_ms(1);
    let b = ipam.allocate(ephemeral("c2", "n1", "z1")).await.unwrap();
    assert_eq!(ip_of(&b), ip_of(&a));
}

#[tokio::test]
async fn per_subnet_cooldown_overrides_the_default() {
    let clock = ManualClock::new(5_000);
    let ipam = ipam_on(MemoryStore::new(), &clock).await;
    let mut spec = subnet("z1", "10.9.0.0/30");
    spec.cooldown_seconds = Some(0);
    ipam.add_subnet(&spec).await.unwrap();
    ipam.allocate(ephemeral("c1", "n1", "z1")).await.unwrap();
    ipam.detach(del("c1", None)).await.unwrap();
    ipam.allocate(ephemeral("c2", "n1", "z1")).await.unwrap();
}

#[tokio::test]
async fn oldest_released_address_is_reused_first() {
    let (ipam, clock, _) = setup("10.9.0.0/29").await; // .2 .. .6 usable
    for i in 0..5 {
        ipam.allocate(ephemeral(&format!("c{i}"), "n1", "z1"))
            .await
            .unwrap();
    }
    for i in [3, 1, 4] {
        ipam.detach(del(&format!("c{i}"), None)).await.unwrap();
        clock.advance_ms(1);
    }
    clock.advance_ms(COOLDOWN_MS);
    let order: Vec<String> = {
        let mut v = Vec::new();
        for i in 10..13 {
            v.push(
                ip_of(
                    &ipam
                        .allocate(ephemeral(&format!("c{i}"), "n1", "z1"))
                        .await
                        .unwrap(),
                )
                .to_string(),
            );
        }
        v
    };
    assert_eq!(order, vec!["10.9.0.5", "10.9.0.3", "10.9.0.6"]);
}

#[tokio::test]
async fn exhausted_zone_and_unknown_zone_are_clear_errors() {
    let (ipam, _, _) = setup("10.9.0.0/30").await;
    ipam.allocate(fixed("a", "c1", "n1", "z1")).await.unwrap();
    let e = ipam
        .allocate(fixed("b", "c2", "n1", "z1"))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::ZoneExhausted { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("zone \"z1\" is exhausted: no free IPv4 address: 0 of 1 free, 1 leased"),
        "{e}"
    );
    let e = ipam
        .allocate(fixed("b", "c2", "n1", "nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::UnknownZone { .. }), "{e}");
}

#[tokio::test]
async fn fixed_lease_refuses_another_zone() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    ipam.add_subnet(&subnet("z2", "10.8.0.0/24")).await.unwrap();
    ipam.allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let e = ipam
        .allocate(fixed("redis-0", "c2", "n9", "z2"))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::WrongZone { .. }));
    assert!(e.to_string().contains("10.9.0.2"), "{e}");
}

#[tokio::test]
async fn dual_stack_zone_gives_one_address_of_each_family() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    ipam.add_subnet(&subnet("z1", "fd00:9::/64")).await.unwrap();
    let r = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let addrs: Vec<&str> = r.0.ips.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(addrs, vec!["10.9.0.2/24", "fd00:9::2/64"]);
    // Release frees both.
    let released = ipam.release(&owner("redis-0")).await.unwrap().unwrap();
    assert_eq!(released.ips.len(), 2);
    assert!(ipam.lease_by_ip("fd00:9::2".parse().unwrap()).is_err());
}

#[tokio::test]
async fn release_is_idempotent_and_starts_the_cooldown() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    let r = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    assert!(ipam.release(&owner("redis-0")).await.unwrap().is_some());
    assert!(ipam.release(&owner("redis-0")).await.unwrap().is_none());
    // A new pod with the same name after the release gets a NEW address (the old one cools).
    let again = ipam
        .allocate(fixed("redis-0", "c2", "n1", "z1"))
        .await
        .unwrap();
    assert_ne!(ip_of(&again), ip_of(&r));
}

/// A release repeated after the owner got a new lease (the controller crashed between releasing
/// and dropping its finalizer) names the old addresses and leaves the new lease alone.
#[tokio::test]
async fn exact_release_leaves_a_newer_lease_of_the_owner_alone() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    let first = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let old: Vec<std::net::IpAddr> = first.0.lease.ips.iter().map(|i| i.ip).collect();
    assert!(
        ipam.release_exact(&owner("redis-0"), Some(&old))
            .await
            .unwrap()
            .is_some()
    );
    let second = ipam
        .allocate(fixed("redis-0", "c2", "n1", "z1"))
        .await
        .unwrap();
    assert!(
        ipam.release_exact(&owner("redis-0"), Some(&old))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        ipam.lease_by_owner(&owner("redis-0")).unwrap().ips.len(),
        1,
        "the new lease stays"
    );
    let new: Vec<std::net::IpAddr> = second.0.lease.ips.iter().map(|i| i.ip).collect();
    assert!(
        ipam.release_exact(&owner("redis-0"), Some(&new))
            .await
            .unwrap()
            .is_some()
    );
}

/// A release whose store commit landed but whose cache update never ran (its caller was
/// dropped in between) is learned at the next call on that lease: the lease goes, and its
/// address joins the cooldown instead of vanishing from the pool until a restart.
#[tokio::test]
async fn a_release_the_cache_missed_is_learned_with_its_addresses() {
    let (ipam, clock, store) = setup("10.9.0.0/30").await;
    let r = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let ips: Vec<std::net::IpAddr> = r.0.lease.ips.iter().map(|i| i.ip).collect();
    let key = OwnerKey::fixed(&owner("redis-0"));
    let txn = {
        let st = ipam.state();
        leases::end_lease_txn(&key, st.leases.get(&key).unwrap(), clock.now_ms())
    };
    assert!(matches!(
        store.commit(txn).await.unwrap(),
        Outcome::Committed(_)
    ));

    assert!(
        ipam.release_exact(&owner("redis-0"), Some(&ips))
            .await
            .unwrap()
            .is_none(),
        "the store already ended it"
    );
    assert!(ipam.lease_by_owner(&owner("redis-0")).is_err());
    assert_eq!(ipam.subnets()[0].usage.cooling, 1);
    assert_eq!(ipam.inconsistencies(), Vec::<String>::new());
    // After the cooldown the address is handed out again (a /30 has this one only).
    clock.advance_ms(COOLDOWN_MS);
    let again = ipam
        .allocate(fixed("redis-1", "c2", "n1", "z1"))
        .await
        .unwrap();
    assert_eq!(ip_of(&again), ips[0]);
}

#[tokio::test]
async fn gc_detaches_fixed_releases_ephemeral_and_keeps_valid_ones() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    ipam.allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    ipam.allocate(ephemeral("c2", "n1", "z1")).await.unwrap();
    ipam.allocate(ephemeral("c3", "n1", "z1")).await.unwrap();
    ipam.allocate(ephemeral("c4", "n2", "z1")).await.unwrap();
    let valid = vec![AttachmentRef {
        container_id: "c3".into(),
        ifname: "eth0".into(),
    }];
    let out = ipam.gc("n1", &valid).await;
    assert_eq!((out.detached, out.released), (1, 1), "{out:?}");
    assert!(out.errors.is_empty());
    let fixed_lease = ipam.lease_by_owner(&owner("redis-0")).unwrap();
    assert!(
        fixed_lease.attachment.is_none(),
        "fixed lease kept, only detached"
    );
    let left: Vec<String> = ipam
        .list(&LeaseFilter::default())
        .unwrap()
        .items
        .iter()
        .filter_map(|l| l.attachment.as_ref().map(|a| a.container_id.clone()))
        .collect();
    assert_eq!(left, vec!["c3", "c4"]);
}

#[tokio::test]
async fn restart_reads_everything_back() {
    let (ipam, clock, store) = setup("10.9.0.0/28").await;
    let f = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    ipam.allocate(ephemeral("c2", "n1", "z1")).await.unwrap();
    ipam.detach(del("c2", None)).await.unwrap();
    drop(ipam);
    let ipam = ipam_on(store, &clock).await;
    assert_eq!(
        ipam.lease_by_owner(&owner("redis-0")).unwrap().ips[0].ip,
        ip_of(&f)
    );
    let s = ipam.subnet("10.9.0.0-28").unwrap();
    assert_eq!(
        (s.usage.attached, s.usage.cooling),
        (1, 1),
        "cooldown survives the restart"
    );
    assert!(ipam.inconsistencies().is_empty());
    // The next fresh address continues after the used ones.
    let n = ipam.allocate(ephemeral("c3", "n1", "z1")).await.unwrap();
    assert_eq!(ip_of(&n).to_string(), "10.9.0.4");
}

#[tokio::test]
async fn subnet_admin() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    let e = ipam
        .add_subnet(&subnet("z1", "10.9.0.0/25"))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::SubnetOverlap { .. }), "{e}");
    let mut dup = subnet("z2", "10.10.0.0/24");
    dup.name = Some("10.9.0.0-24".into());
    assert!(matches!(
        ipam.add_subnet(&dup).await.unwrap_err(),
        IpamError::SubnetExists { .. }
    ));
    ipam.allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let e = ipam.remove_subnet("10.9.0.0-24").await.unwrap_err();
    assert!(matches!(e, IpamError::SubnetInUse { leases: 1, .. }), "{e}");
    // Refused removal leaves the subnet usable.
    ipam.allocate(fixed("redis-1", "c2", "n1", "z1"))
        .await
        .unwrap();
    ipam.release(&owner("redis-0")).await.unwrap();
    ipam.release(&owner("redis-1")).await.unwrap();
    ipam.remove_subnet("10.9.0.0-24").await.unwrap();
    assert!(ipam.subnets().is_empty());
    assert!(matches!(
        ipam.remove_subnet("10.9.0.0-24").await,
        Err(IpamError::NotFound { .. })
    ));
    // The same CIDR can be added again, all addresses fresh.
    ipam.add_subnet(&subnet("z1", "10.9.0.0/24")).await.unwrap();
    assert_eq!(ipam.subnet("10.9.0.0-24").unwrap().usage.free, 253);
}

#[tokio::test]
async fn zones_report_capacity() {
    let (ipam, _, _) = setup("10.9.0.0/30").await;
    ipam.add_subnet(&subnet("z2", "10.8.0.0/24")).await.unwrap();
    ipam.allocate(fixed("a", "c1", "n1", "z1")).await.unwrap();
    let zones = ipam.zones();
    assert_eq!(zones.len(), 2);
    assert_eq!(
        (
            zones[0].name.as_str(),
            zones[0].free_v4,
            zones[0].can_allocate
        ),
        ("z1", Some(0), false)
    );
    assert_eq!((zones[1].free_v4, zones[1].can_allocate), (Some(253), true));
}

#[tokio::test]
async fn list_filters_and_pages() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    for i in 0..7 {
        ipam.allocate(fixed(
            &format!("p{i}"),
            &format!("c{i}"),
            if i % 2 == 0 { "n1" } else { "n2" },
            "z1",
        ))
        .await
        .unwrap();
    }
    ipam.allocate(ephemeral("e1", "n1", "z1")).await.unwrap();
    let mut filter = LeaseFilter {
        kind: Some(LeaseKind::Fixed),
        limit: Some(3),
        ..Default::default()
    };
    let mut pods = Vec::new();
    loop {
        let page = ipam.list(&filter).unwrap();
        assert!(page.items.len() <= 3);
        pods.extend(page.items.iter().map(|l| l.owner.clone().unwrap().pod));
        match page.next {
            Some(n) => filter.continue_from = Some(n),
            None => break,
        }
    }
    assert_eq!(pods, vec!["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let n2 = ipam
        .list(&LeaseFilter {
            node: Some("n2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(n2.items.len(), 3);
    let e = ipam
        .list(&LeaseFilter {
            limit: Some(0),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(&e, IpamError::Invalid(f) if f.field == "limit"),
        "{e}"
    );
}

#[tokio::test]
async fn concurrent_allocations_never_share_an_address() {
    let (ipam, _, _) = setup("10.9.0.0/24").await;
    let ipam = Arc::new(ipam);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let ipam = ipam.clone();
        tasks.push(tokio::spawn(async move {
            ipam.allocate(fixed(&format!("p{i}"), &format!("c{i}"), "n1", "z1"))
                .await
        }));
    }
    let mut ips = std::collections::HashSet::new();
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => assert!(ips.insert(ip_of(&r))),
            Err(IpamError::ZoneExhausted { .. }) => exhausted += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ips.len(), exhausted), (253, 47));
}

#[tokio::test]
async fn a_stale_cache_costs_a_retry_not_a_duplicate() {
    // Two services on one store (as two replicas would be): each one's cache misses the
    // other's writes, and the store's checks must still keep every address single-owned.
    let clock = ManualClock::new(1);
    let store = MemoryStore::new();
    let a = ipam_on(store.clone(), &clock).await;
    a.add_subnet(&subnet("z1", "10.9.0.0/29")).await.unwrap();
    let b = ipam_on(store.clone(), &clock).await;
    let mut got = std::collections::HashSet::new();
    for i in 0..5 {
        let (svc, name) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        let r = svc
            .allocate(fixed(&format!("{name}{i}"), &format!("c{i}"), "n1", "z1"))
            .await
            .unwrap();
        assert!(got.insert(ip_of(&r)), "duplicate {}", ip_of(&r));
    }
    // Same owner through the other replica: the same address comes back.
    let first = a.allocate(fixed("a0", "c0", "n1", "z1")).await.unwrap();
    let via_b = b.allocate(fixed("a0", "c7", "n2", "z1")).await.unwrap();
    assert_eq!(ip_of(&first), ip_of(&via_b));
    let reloaded = ipam_on(store, &clock).await;
    assert!(
        reloaded.inconsistencies().is_empty(),
        "{:?}",
        reloaded.inconsistencies()
    );
}
