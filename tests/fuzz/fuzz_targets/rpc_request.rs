//! Arbitrary bytes as a `criu swrk` request packet: `criu_cli::rpc::decode_request` never
//! panics; a request it accepts has a known type and re-encodes to a message that decodes
//! to the same request; an error answer for it encodes.
#![no_main]

use criu_cli::rpc::{RequestError, decode, decode_request};
use criu_proto::rpc::{CriuReq, CriuReqType};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    match decode_request(data) {
        Ok((kind, req)) => {
            assert_ne!(kind, CriuReqType::Empty);
            assert_eq!(kind as i32, req.r#type);
            let again = CriuReq::decode(&*req.encode_to_vec()).expect("our encoding decodes");
            assert_eq!(again, req);
        }
        Err(e) => {
            let resp = decode::failure(CriuReqType::Empty, e.errno(), e.to_string());
            assert!(!decode::encode_response(&resp).is_empty());
            if let RequestError::UnknownType(t) = e {
                assert!(CriuReqType::try_from(t).is_err());
            }
        }
    }
});
