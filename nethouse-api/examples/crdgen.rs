//! Prints the Location CRD: `cargo run -q -p nethouse-api --features crd --example crdgen > manifests/base/crd/location.yaml`
fn main() {
    print!("{}", nethouse_api::location::crd_yaml());
}
