//! CRIU's raw `ifaddr-N.img`, `route-N.img`, `route6-N.img` and `rule-N.img`: what
//! `ip addr save`, `ip route save`, `ip -6 route save` and `ip rule save` write (CRIU runs
//! them), i.e. iproute2's 4-byte magic then the kernel's dump answers as they came, each
//! padded to 4 bytes. `ip ... showdump` reads them; CRIU replays them with `ip ... restore`.

use super::nlmsg;

/// The four images and iproute2's magic for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpImage {
    Addr,
    Route,
    Route6,
    Rule,
}

impl IpImage {
    /// iproute2's magic (`ipadd_dump_magic`, `route_dump_magic`, `rule_dump_magic`).
    pub fn magic(self) -> u32 {
        match self {
            IpImage::Addr => 0x4736_1222,
            IpImage::Route | IpImage::Route6 => 0x4531_1224,
            IpImage::Rule => 0x7170_6986,
        }
    }

    /// The image file name for namespace `id`.
    pub fn file_name(self, id: u32) -> String {
        let kind = match self {
            IpImage::Addr => criu_proto::ImageKind::Ifaddr,
            IpImage::Route => criu_proto::ImageKind::Route,
            IpImage::Route6 => criu_proto::ImageKind::Route6,
            IpImage::Rule => criu_proto::ImageKind::Rule,
        };
        kind.file_name(u64::from(id))
    }
}

/// The image bytes for `msgs` (whole netlink messages).
pub fn encode(img: IpImage, msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = img.magic().to_ne_bytes().to_vec();
    for m in msgs {
        out.extend_from_slice(m);
        out.resize(nlmsg::align(out.len()), 0);
    }
    out
}

/// The messages of an image; a wrong magic or a message cut short is an error saying which.
pub fn decode(img: IpImage, bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let Some(head) = bytes.get(..4) else {
        return Err(format!(
            "{} bytes, shorter than iproute2's 4-byte magic",
            bytes.len()
        ));
    };
    let magic = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
    if magic != img.magic() {
        return Err(format!(
            "magic {magic:#x}, expected iproute2's {:#x}",
            img.magic()
        ));
    }
    Ok(nlmsg::split(&bytes[4..])?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cut_and_foreign_images_are_refused() {
        let m = nlmsg::Builder::new(20, 0, &[2, 8, 0, 0, 1, 0, 0, 0]).finish();
        let bytes = encode(IpImage::Addr, &[m]);
        let err = decode(IpImage::Addr, &bytes[..bytes.len() - 3]).unwrap_err();
        assert!(err.contains("message 0"), "{err}");
        assert!(
            decode(IpImage::Route, &bytes)
                .unwrap_err()
                .contains("magic")
        );
        assert!(
            decode(IpImage::Rule, &[1, 2])
                .unwrap_err()
                .contains("shorter")
        );
        assert_eq!(IpImage::Route6.file_name(3), "route6-3.img");
    }

    proptest! {
        #[test]
        fn messages_round_trip(bodies in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let msgs: Vec<Vec<u8>> = bodies
                .iter()
                .map(|b| nlmsg::Builder::new(24, 0, b).finish())
                .collect();
            let got = decode(IpImage::Route, &encode(IpImage::Route, &msgs)).unwrap();
            prop_assert_eq!(got, msgs);
        }
    }
}
