//! The cluster half of kcache: the router (`kcache route`); the locator and the divergence
//! rules come next (`../shared/design/ARCHITECTURE.md`, "Cluster").

pub(crate) mod route;
