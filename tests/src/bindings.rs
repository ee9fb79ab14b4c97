//! `bindgen!` of the Spin interfaces spin-sdk 5.2 components use (the WIT
//! files under `tests/wit`, copied unchanged from the spin-sdk crate).

#![expect(missing_docs, reason = "bindgen-generated code")]

/// The imports: key-value, outbound Redis, variables.
pub mod imports {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "darkroom:test-host/spin-imports",
        imports: { default: async },
        with: {
            "fermyon:spin/key-value.store": crate::kv::StoreHandle,
            "fermyon:spin/redis.connection": crate::redis_out::RedisConnection,
        },
    });
}

/// The Redis trigger's export, `fermyon:spin/inbound-redis`.
pub mod redis_trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "darkroom:test-host/redis-trigger",
        exports: { default: async },
    });
}
