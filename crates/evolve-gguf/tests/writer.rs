//! Writer round trips: metadata of every type, tensor bytes, layout and atomicity.

use evolve_gguf::{
    GgmlType, GgufWriter, TensorData, Value, dequantize_q8_0, quantize_q8_0, read_path,
    tensor_to_f32,
};

#[test]
fn metadata_of_every_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.gguf");
    let values = vec![
        ("a.u8", Value::U8(200)),
        ("a.i8", Value::I8(-5)),
        ("a.u16", Value::U16(60000)),
        ("a.i16", Value::I16(-30000)),
        ("a.u32", Value::U32(4_000_000_000)),
        ("a.i32", Value::I32(-7)),
        ("a.u64", Value::U64(1 << 50)),
        ("a.i64", Value::I64(-(1 << 50))),
        ("a.f32", Value::F32(1.5)),
        ("a.f64", Value::F64(-2.25)),
        ("a.bool", Value::Bool(true)),
        ("a.str", Value::String("héllo ▁".into())),
        (
            "a.arr",
            Value::Array(vec![Value::String("x".into()), Value::String("".into())]),
        ),
        (
            "a.nested",
            Value::Array(vec![
                Value::Array(vec![Value::I32(1)]),
                Value::Array(vec![]),
            ]),
        ),
        ("a.empty", Value::Array(vec![])),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &values {
        w.add_metadata(*k, v.clone());
    }
    w.add_metadata("a.u8", Value::U8(201)); // replaces in place
    w.write_to_path(&path).unwrap();

    let f = read_path(&path).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata.len(), values.len() + 1, "plus general.alignment");
    assert_eq!(f.get("a.u8"), Some(&Value::U8(201)));
    for (k, v) in &values[1..] {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert_eq!(f.get_u64("general.alignment"), Some(32));
    assert_eq!(f.get_u64("a.i8"), None, "negative ints are not u64");
    assert_eq!(f.get_u64("a.u16"), Some(60000));
    assert!(f.tensors.is_empty());
}

#[test]
fn f32_f16_and_q8_0_tensor_bytes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let f32_values: Vec<f32> = (0..15).map(|i| i as f32 * -0.37 + 1e-3).collect();
    let f16_values: Vec<f32> = vec![0.5, -1.0, 2.0, 0.25];
    let q8_values: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 10.0).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("test".into()));
    w.add_tensor("a", vec![5, 3], TensorData::F32(f32_values.clone()))
        .unwrap();
    w.add_tensor("b", vec![4], TensorData::F16(f16_values.clone()))
        .unwrap();
    w.add_tensor("c", vec![32, 2], TensorData::Q8_0(q8_values.clone()))
        .unwrap();
    w.write_to_path(&path).unwrap();
    assert!(!dir.path().join("t.gguf.tmp").exists());

    let f = read_path(&path).unwrap();
    let names: Vec<_> = f
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.ggml_type, t.offset))
        .collect();
    // a: 60 bytes -> padded to 64; b: 8 bytes -> 32; c: 68 bytes.
    assert_eq!(
        names,
        vec![
            ("a", GgmlType::F32, 0),
            ("b", GgmlType::F16, 64),
            ("c", GgmlType::Q8_0, 96)
        ]
    );
    assert_eq!(
        f.file_size,
        f.data_offset + 96 + 68 + 28,
        "data padded to the alignment"
    );

    let a = f.read_tensor_bytes("a").unwrap();
    let expected: Vec<u8> = f32_values.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(a, expected);
    assert_eq!(tensor_to_f32(&f.tensors[0], &a).unwrap(), f32_values);
    assert_eq!(
        tensor_to_f32(&f.tensors[1], &f.read_tensor_bytes("b").unwrap()).unwrap(),
        f16_values
    );
    let c = f.read_tensor_bytes("c").unwrap();
    assert_eq!(c, quantize_q8_0(&q8_values).unwrap());
    assert_eq!(
        tensor_to_f32(&f.tensors[2], &c).unwrap(),
        dequantize_q8_0(&c)
    );

    let err = f.read_tensor_bytes("zzz").unwrap_err().to_string();
    assert!(err.starts_with("tensor 'zzz' not found in "), "{err}");
    assert_eq!(f.summary().parameter_count, 15 + 4 + 64);
}

#[test]
fn tensor_to_f32_rejects_other_types_and_wrong_lengths() {
    let info = evolve_gguf::TensorInfo {
        name: "k".into(),
        dims: vec![256],
        ggml_type: GgmlType::Q4_K,
        offset: 0,
    };
    let err = tensor_to_f32(&info, &[0u8; 144]).unwrap_err().to_string();
    assert!(err.contains("of type Q4_K"), "{err}");
    let info = evolve_gguf::TensorInfo {
        ggml_type: GgmlType::F32,
        ..info
    };
    assert!(tensor_to_f32(&info, &[0u8; 4]).is_err());
}

#[test]
fn bad_tensors_are_rejected_when_added() {
    let mut w = GgufWriter::new();
    let err = w
        .add_tensor("q", vec![48, 2], TensorData::Q8_0(vec![0.0; 96]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("dims[0] to be a multiple of 32, got 48"),
        "{err}"
    );
    let err = w
        .add_tensor("n", vec![3, 3], TensorData::F32(vec![0.0; 8]))
        .unwrap_err();
    assert!(err.to_string().contains("9 elements but 8 values"), "{err}");
    let err = w
        .add_tensor("d", vec![1; 5], TensorData::F32(vec![0.0]))
        .unwrap_err();
    assert!(err.to_string().contains("1 to 4 dimensions"), "{err}");
    w.add_tensor("ok", vec![2], TensorData::F32(vec![0.0; 2]))
        .unwrap();
    assert!(
        w.add_tensor("ok", vec![2], TensorData::F32(vec![0.0; 2]))
            .is_err(),
        "duplicate name"
    );
    let err = w
        .add_tensor(
            "r",
            vec![32],
            TensorData::Raw {
                ggml_type: GgmlType::Q8_0,
                bytes: vec![0; 33],
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("needs 34 bytes"), "{err}");
}

#[test]
fn mixed_arrays_and_bad_alignment_fail_without_leaving_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("mixed", Value::Array(vec![Value::U8(1), Value::I32(2)]));
    let err = w.write_to_path(&path).unwrap_err();
    assert!(err.to_string().contains("mixes value types"), "{err}");
    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", Value::U32(24));
    assert!(w.write_to_path(&path).is_err());
    assert!(!path.exists());
}

#[test]
fn custom_alignment_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a64.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", Value::U32(64));
    w.add_tensor("x", vec![3], TensorData::F32(vec![1.0, 2.0, 3.0]))
        .unwrap();
    w.add_tensor("y", vec![1], TensorData::F32(vec![4.0]))
        .unwrap();
    w.write_to_path(&path).unwrap();
    let f = read_path(&path).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.tensors[1].offset, 64);
    assert_eq!(f.metadata.len(), 1, "no second alignment key");
    assert_eq!(f.read_tensor_bytes("y").unwrap(), 4.0f32.to_le_bytes());
}

/// A tensor produced while the file is written gives the same file as one encoded when added,
/// each producer runs when its tensor is written (after the ones before it), and a producer
/// that returns the wrong type or fails leaves no file.
#[test]
fn deferred_tensors_write_the_same_file_and_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) / 7.0).collect();
    let small = vec![1.0f32, -2.0, 3.5];
    let eager = dir.path().join("eager.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor("q", vec![32, 2], TensorData::Q8_0(values.clone()))
        .unwrap();
    w.add_tensor("v", vec![3], TensorData::F32(small.clone()))
        .unwrap();
    w.write_to_path(&eager).unwrap();

    let order = std::cell::RefCell::new(Vec::new());
    let later = dir.path().join("later.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor_later(
        "q",
        vec![32, 2],
        GgmlType::Q8_0,
        Box::new(|| {
            order.borrow_mut().push("q");
            Ok(TensorData::Q8_0(values.clone()))
        }),
    )
    .unwrap();
    w.add_tensor_later(
        "v",
        vec![3],
        GgmlType::F32,
        Box::new(|| {
            order.borrow_mut().push("v");
            Ok(TensorData::F32(small.clone()))
        }),
    )
    .unwrap();
    assert!(order.borrow().is_empty(), "nothing is produced when added");
    w.write_to_path(&later).unwrap();
    assert_eq!(*order.borrow(), ["q", "v"]);
    assert_eq!(
        std::fs::read(&eager).unwrap(),
        std::fs::read(&later).unwrap()
    );

    let bad = dir.path().join("bad.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor_later(
        "q",
        vec![32, 2],
        GgmlType::Q8_0,
        Box::new(|| Ok(TensorData::F16(vec![0.0; 64]))),
    )
    .unwrap();
    let err = w.write_to_path(&bad).unwrap_err().to_string();
    assert!(
        err.contains("declared Q8_0") && err.contains("produced F16"),
        "{err}"
    );
    assert!(!bad.exists() && !dir.path().join("bad.gguf.tmp").exists());

    let mut w = GgufWriter::new();
    w.add_tensor_later(
        "x",
        vec![4],
        GgmlType::F32,
        Box::new(|| Err("no memory left".into())),
    )
    .unwrap();
    let err = w.write_to_path(&bad).unwrap_err().to_string();
    assert_eq!(err, "cannot compute tensor 'x': no memory left");
    assert!(!bad.exists() && !dir.path().join("bad.gguf.tmp").exists());

    let err = GgufWriter::new()
        .add_tensor_later("q", vec![48], GgmlType::Q8_0, Box::new(|| unreachable!()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiple of 32"), "{err}");
}
