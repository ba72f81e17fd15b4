//! Rebuilds the binary when the dashboard build changes: the assets are embedded
//! (`api/dashboard.rs`) and vite renames them on every build.
fn main() {
    println!("cargo:rerun-if-changed=../dashboard/dist");
}
