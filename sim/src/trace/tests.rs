use super::*;

/// The events, without the device names (tested on their own).
fn kinds(t: &Trace) -> Vec<&EventKind> {
    t.events
        .iter()
        .map(|e| &e.kind)
        .filter(|k| !matches!(k, EventKind::DeviceName(_)))
        .collect()
}

fn out(data: &[u8]) -> Vec<u8> {
    data.to_vec()
}

#[test]
fn libccid_both_frame_forms_and_calls() {
    let text = "\
00000010 [140234] ifdhandler.c:1246:IFDHPowerICC() action: PowerUp, usb:1209/2702:libudev:0:/dev/bus/usb/001/004 (lun: 0)
00000011 [140234] -> 000000 62 00 00 00 00 00 04 00 00 00 
00000900 [140234] <- 000000 80 02 00 00 00 00 04 00 00 00 3B 00 
00000020 [140234] Card ATR: 3B 00 
00000003 -> lun: 10000, 65 00 00 00 00 00 05 00 00 00 
00000004 <- lun: 10000, 81 00 00 00 00 00 05 02 00 00 
00000005 NotifySlotChange: 50 02 
";
    let t = parse_str("t.log", text).unwrap();
    assert_eq!(t.format, Format::Libccid);
    let k = kinds(&t);
    assert_eq!(
        k[0],
        &EventKind::Call {
            call: Call::PowerUp,
            lun: Some(0)
        }
    );
    match k[1] {
        EventKind::BulkOut(tr) => {
            assert_eq!(tr.reader, Some(0));
            assert_eq!(tr.data, out(&[0x62, 0, 0, 0, 0, 0, 4, 0, 0, 0]));
            assert!(tr.is_complete_message());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(k[2], EventKind::BulkIn(tr) if tr.data.len() == 12));
    assert_eq!(k[3], &EventKind::Atr(vec![0x3B, 0]));
    assert!(matches!(k[4], EventKind::BulkOut(tr) if tr.reader == Some(1)));
    assert_eq!(
        k[6],
        &EventKind::Interrupt {
            reader: None,
            data: vec![0x50, 0x02]
        }
    );
    assert_eq!(t.events[2].line, 2);
    let names: Vec<_> = t
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DeviceName(n) => Some((e.line, n.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec![(1, "usb:1209/2702:libudev:0:/dev/bus/usb/001/004")]
    );
}

#[test]
fn libccid_zlp_colour_and_gap() {
    let text = "00000010 -> 000000 6F 05 00 00 00 00 28 00 00 00 00 C0 00 00 02 \n\
                00001000 <- 000000 \n\
                # --- [excerpt gap] ---\n\
                \u{1b}[36m00000010\u{1b}[0m [77] -> lun: 0, 65 00 00 00 00 00 29 00 00 00 \n";
    let t = parse_str("z.log", text).unwrap();
    let segs = t.segments();
    assert_eq!(segs.len(), 2);
    assert!(matches!(&segs[0][1].kind, EventKind::BulkIn(tr) if tr.data.is_empty()));
    assert!(matches!(&segs[1][0].kind, EventKind::BulkOut(tr) if tr.seq() == Some(0x29)));
}

#[test]
fn libccid_cut_lines_only_at_excerpt_end() {
    let cut = "00000010 -> 000000 65 00 00 00 00 00 06 00 00 00 \n00000400 <- 000000 81 00 0\n";
    let t = parse_str("c.log", cut).unwrap();
    assert!(matches!(&t.events[1].kind, EventKind::BulkIn(tr) if tr.cut && tr.data.len() == 2));
    let bad = "00000400 <- 000000 81 0Z 00\n00000010 -> 000000 65\n";
    let e = parse_str("bad.log", bad).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e
        .to_string()
        .starts_with("bad.log:1: invalid hex byte '0Z'"));
}

#[test]
fn libccid_driver_lines() {
    let text = "\
00000349 ifdhandler.c:111:CreateChannelByNameOrChannel() Lun: 10000, device: usb:08e6/4433:libudev:0:/dev/bus/usb/003/002
00000491 ccid_usb.c:254:OpenUSBByName() Reader index: 1, Device: usb:08e6/4433:libudev:0:/dev/bus/usb/003/002
00000010 ifdhandler.c:1506:IFDHControl() ControlCode: 0x42330012, usb:08e6/4433 (lun: 10000)
00000011 ifdhandler.c:743:IFDHSetProtocolParameters() protocol T=1, usb:08e6/4433 (lun: 10000)
00000012 ccid_usb.c:898:ReadUSB() read failed (1/7): -7 LIBUSB_ERROR_TIMEOUT
00000013 ifdhandler.c:687:IFDHSetCapabilities() tag: 0xFB4, usb:08e6/4433 (lun: 10000)
00000014 ifdhandler.c:2081:IFDHICCPresence() Card absent
00000015 winscard.c:1596:SCardTransmit() Send Protocol: T=0
00000016 ccid_usb.c:1555:ControlUSB() request: 0x03
00000017 receive: 80 25 00 00 00 4B 00 00 
";
    let t = parse_str("d.log", text).unwrap();
    let k = kinds(&t);
    assert_eq!(
        k[0],
        &EventKind::VidPid {
            vendor: 0x08E6,
            product: 0x4433
        }
    );
    assert!(matches!(
        k[1],
        EventKind::Call { call: Call::CreateChannel { device: Some(d) }, lun: Some(0x10000) }
            if d.starts_with("usb:08e6/4433")
    ));
    assert_eq!(k[2], &EventKind::ReaderIndex { index: 1 });
    assert_eq!(
        k[3],
        &EventKind::Call {
            call: Call::Control { code: 0x4233_0012 },
            lun: Some(0x10000)
        }
    );
    assert!(matches!(
        k[4],
        EventKind::Call {
            call: Call::SetProtocol { protocol: 1 },
            ..
        }
    ));
    assert_eq!(k[5], &EventKind::ReadTimeout);
    assert!(matches!(
        k[6],
        EventKind::Call {
            call: Call::SetCapabilities { tag: 0xFB4 },
            ..
        }
    ));
    assert_eq!(k[7], &EventKind::PresenceResult { present: false });
    assert_eq!(k[8], &EventKind::Protocol(0));
    assert_eq!(k[9], &EventKind::ControlRequest { request: 3 });
    assert_eq!(
        k[10],
        &EventKind::ControlIn(vec![0x80, 0x25, 0, 0, 0, 0x4B, 0, 0])
    );
}

#[test]
fn gnupg_wrapped_raw_and_status() {
    let text = "\
2011-05-02 10:00:01 scdaemon[77] DBG: ccid-driver: sending 6F 07 00 00
00 00 21 00 00 00 00 40 02 00 B0 00
F2
2011-05-02 10:00:01 scdaemon[77] DBG: ccid-driver: status: 00  error:
00  octet[9]: 00
               data: 00 40 02 90 00 D2
2011-05-02 10:00:01 scdaemon[77] DBG: ccid-driver: sending escape
sequence to switch modes
";
    let t = parse_str("g.log", text).unwrap();
    assert_eq!(t.format, Format::Gnupg);
    assert_eq!(t.events.len(), 2);
    match &t.events[0].kind {
        EventKind::BulkOut(tr) => {
            assert_eq!(tr.data.len(), 17);
            assert!(tr.is_complete_message());
        }
        other => panic!("{other:?}"),
    }
    match &t.events[1].kind {
        EventKind::BulkIn(tr) => {
            assert!(tr.reconstructed);
            assert_eq!(tr.data[0], 0x80);
            assert_eq!(tr.seq(), Some(0x21));
            assert!(tr.is_complete_message());
            assert_eq!(&tr.data[10..], &[0, 0x40, 2, 0x90, 0, 0xD2]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.events[1].line, 4);
}

#[test]
fn gnupg_decoded_blocks() {
    let text = "\
> DBG: ccid-driver:   dwFeatures       000100BA
> DBG: ccid-driver: PC_to_RDR_IccPowerOn:
> DBG: ccid-driver:   dwLength ..........: 0
> DBG: ccid-driver:   bSlot .............: 0
> DBG: ccid-driver:   bSeq ..............: 7
> DBG: ccid-driver:   bPowerSelect ......: 0x01 (5.0 V)
> DBG: ccid-driver:   [0008]  00 00
> DBG: ccid-driver: RDR_to_PC_SlotStatus:
> DBG: ccid-driver:   dwLength ..........: 0
> DBG: ccid-driver:   bSeq ..............: 7
> DBG: ccid-driver:   bStatus ...........: 66
> DBG: ccid-driver:   bError ............: 254
";
    let t = parse_str("g2.log", text).unwrap();
    let k = kinds(&t);
    assert_eq!(
        k[0],
        &EventKind::DescriptorField {
            name: "dwFeatures".into(),
            value: "000100BA".into()
        }
    );
    assert!(
        matches!(k[1], EventKind::BulkOut(tr) if tr.data == vec![0x62, 0, 0, 0, 0, 0, 7, 1, 0, 0])
    );
    assert!(
        matches!(k[2], EventKind::BulkIn(tr) if tr.data == vec![0x81, 0, 0, 0, 0, 0, 7, 0x42, 0xFE, 0])
    );
}

#[test]
fn libnfc_continuations() {
    let text = "\
debug\tlibnfc.driver.acr122_usb\tTX: 6f 07 00 00 00 00 00 00 00 00 ff 00 
00 00 02 d4 02 
debug\tlibnfc.driver.acr122_usb\tRX: 83 00 00 00 00 00 00 41 07 00 
error\tlibnfc.driver.acr122_usb\tToo small reply
";
    let t = parse_str("n.log", text.replace('\t', "    ").as_str()).unwrap();
    assert_eq!(t.format, Format::Libnfc);
    assert_eq!(t.host_frames(), 1);
    assert!(matches!(&t.events[0].kind, EventKind::BulkOut(tr) if tr.is_complete_message()));
    assert!(matches!(&t.events[1].kind, EventKind::BulkIn(tr) if tr.data[8] == 7));
}

#[test]
fn plain_labels_java_and_remarks() {
    let text = "\
Request:

6200000000000201000

Response (ATR = 3B00):

80020000000002000000 3B00
";
    // An odd number of hex digits under a label is an error, not prose.
    let e = parse_str("p.txt", text).unwrap_err();
    assert_eq!(e.line, 3);
    let text = "\
Command (byte) 0x62, (byte) 0x00000000, (byte) 0x00, (byte) 0x09
`65 00 00 00 00 00 0A 00 00 00`
81 00 00 00 00 00 0A 00 00 00 <and so on>
Response 80  00 00 00 00 00 0A 40 FE 00
Some prose about 61 6C bytes.
";
    let t = parse_str("p.txt", text).unwrap();
    assert_eq!(t.format, Format::PlainHex);
    let k = kinds(&t);
    assert_eq!(k.len(), 4);
    assert!(matches!(k[0], EventKind::BulkOut(tr) if tr.data == vec![0x62, 0, 0, 9]));
    assert!(matches!(k[1], EventKind::BulkOut(tr) if tr.seq() == Some(0x0A)));
    assert!(matches!(k[2], EventKind::BulkIn(tr) if tr.cut));
    assert!(matches!(k[3], EventKind::BulkIn(tr) if tr.data[8] == 0xFE));
}

#[test]
fn native_round_trip() {
    let text = "\
00000349 ifdhandler.c:111:CreateChannelByNameOrChannel() Lun: 0, device: usb:08e6/4433:libudev:0:/dev/bus/usb/001/002
00000010 -> 000000 65 00 00 00 00 00 00 00 00 00 
00000010 <- 000000 81 00 00 00 00 00 00 00 00 00 
00000010 <- 000000 
00000525 NotifySlotChange: 50 03 
00000010 ifdhandler.c:1506:IFDHControl() ControlCode: 0x42000D48, usb:08e6/4433 (lun: 0)
00000010 Control TxBuffer: 
# --- [excerpt gap] ---
00000010 <- 000000 81 00 0
";
    let t = parse_str("r.log", text).unwrap();
    let native = t.to_native();
    let back = parse_str("r.trace", &native).unwrap();
    assert_eq!(back.format, Format::Native);
    let strip = |t: &Trace| t.events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
    assert_eq!(strip(&t), strip(&back));
}

#[test]
fn native_errors_name_the_line() {
    let e = parse_str("x.trace", "# ccid-trace 1\nout 62 00\nbogus 1\n").unwrap_err();
    assert_eq!((e.line, e.file.as_str()), (3, "x.trace"));
    let e = parse_str("x.trace", "# ccid-trace 1\ncall control lun=0\n").unwrap_err();
    assert!(e.message.contains("code="), "{e}");
}

#[test]
fn gnupg_offsets_are_bounded() {
    let text = "> DBG: ccid-driver: PC_to_RDR_IccPowerOn:\n> DBG: ccid-driver:   [99999999]  00\n";
    let e = parse_str("big.log", text).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("offset"), "{e}");
}

/// Lines built from fragments of every format, in random order, never
/// make the parser panic; an error names a line of the input.
#[test]
fn garbage_never_panics() {
    let fragments = [
        "00000010 [12] -> 000000 ",
        "<- lun: 10000, ",
        "-> ",
        "NotifySlotChange: ",
        "ifdhandler.c:1:IFDHPowerICC() action: PowerUp (lun: ",
        "ifdhandler.c:2:IFDHControl() ControlCode: 0x",
        "DBG: ccid-driver: sending ",
        "DBG: ccid-driver: status: 40  error: ",
        "> DBG: ccid-driver: PC_to_RDR_XfrBlock:",
        "> DBG: ccid-driver:   [0012]  ",
        "> DBG: ccid-driver:   bSeq ..........: ",
        "debug libnfc.driver.acr122_usb TX: ",
        "Response ",
        "Command (byte) 0x",
        "`",
        "# --- [excerpt gap] ---",
        "6F 05 00 00 00 00 ",
        "0G ",
        "FF",
        "zz ",
        "\u{1b}[36m",
        "é→ ",
        "(lun: 1)",
        "[",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..400 {
        let lines = 1 + next(12);
        let mut text = String::new();
        for _ in 0..lines {
            for _ in 0..1 + next(4) {
                text.push_str(fragments[next(fragments.len())]);
            }
            text.push('\n');
        }
        match parse_str("fuzz", &text) {
            Ok(t) => {
                ok += 1;
                assert!(t.events.iter().all(|e| e.line >= 1 && e.line <= lines));
            }
            Err(e) => {
                err += 1;
                assert!(e.line >= 1 && e.line <= lines, "{e}");
            }
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}
