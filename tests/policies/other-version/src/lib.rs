//! Test fixture: a policy built against a future version of the contract,
//! which Airlock must refuse with a message naming both versions. The WIT is
//! inline on purpose: the one real contract lives in `wit/`.

wit_bindgen::generate!({
    inline: "
        package airlock:policy@9.0.0;
        interface judge {
            evaluate: func(action: string) -> string;
            describe: func() -> string;
        }
        world policy { export judge; }
    ",
});

struct Future;

impl exports::airlock::policy::judge::Guest for Future {
    fn evaluate(_action: String) -> String {
        "allow".to_owned()
    }
    fn describe() -> String {
        "future".to_owned()
    }
}

export!(Future);
