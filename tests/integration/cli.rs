//! The `deltaenergy` command line end to end: its JSON contract, its numbers against the
//! transformers reference, and its behaviour on bad input (an error on stderr, a non-zero exit,
//! never a panic).

use std::process::Output;

use crate::common::*;
use serde_json::Value;

const NAME: &str = "tiny-quickgelu-p8";

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The first reference image with a PNG source: Pillow and we decode PNGs identically, so the
/// whole path from the file can be held to the embedding tolerance.
fn png_image(r: &Reference) -> &RefImage {
    r.images
        .iter()
        .find(|i| i.source.ends_with(".png"))
        .expect("a PNG reference image")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A clear error and a non-zero exit, with no panic message.
fn assert_clean_failure(out: &Output, expect_in_stderr: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail; stderr: {stderr}");
    assert!(
        stderr.contains(expect_in_stderr),
        "stderr lacks {expect_in_stderr:?}: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{stderr}"
    );
}

#[test]
fn tokenize_json_matches_transformers() {
    let _data = data_or_skip!();
    let r = reference(NAME);
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    let mut args = vec!["tokenize", "--json"];
    args.extend(&texts);
    let lines = json_lines(&run_cli(&args));
    assert_eq!(lines.len(), texts.len());
    for (line, t) in lines.iter().zip(&r.texts) {
        assert_eq!(line["text"], t.text);
        let ids: Vec<u32> = line["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, t.ids, "{:?}", t.text);
    }
    // Plain output: the ids separated by spaces.
    let out = run_cli(&["tokenize", "a photo of a cat."]);
    let plain = String::from_utf8(out.stdout).unwrap();
    let want: Vec<String> = r.texts[0].ids.iter().map(u32::to_string).collect();
    assert_eq!(plain.trim(), want.join(" "));
}

/// PNG sources decode identically in Pillow and here, so the whole path (decode, resize,
/// normalise, model) is checked against transformers; inputs come out in argument order.
#[test]
fn embed_in_argument_order_matches_transformers() {
    let data = data_or_skip!();
    let r = reference(NAME);
    let png = png_image(&r);
    let image = data.join(&png.source);
    let model = model_dir(NAME);
    let out = run_cli(&[
        "embed",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--text",
        &r.texts[0].text,
        "--image",
        image.to_str().unwrap(),
        "--text",
        &r.texts[3].text,
    ]);
    let lines = json_lines(&out);
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "image", "text"]);
    assert_eq!(lines[1]["input"], image.to_str().unwrap());
    assert_close(
        "text 0",
        &floats(&lines[0]["embedding"]),
        &r.texts[0].embedding,
    );
    assert_close(
        "png end to end",
        &floats(&lines[1]["embedding"]),
        &png.embedding,
    );
    assert_close(
        "text 3",
        &floats(&lines[2]["embedding"]),
        &r.texts[3].embedding,
    );
}

/// With the template "{}" the class prompts are the reference texts, so the similarities can be
/// checked against cosines of transformers' own features.
#[test]
fn score_json_contract_and_values() {
    let data = data_or_skip!();
    let r = reference(NAME);
    let png = png_image(&r);
    let image = data.join(&png.source);
    // Comma-free reference texts, so they survive the comma-separated class list.
    let classes = [&r.texts[0], &r.texts[1], &r.texts[3]];
    let joined = classes
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let model = model_dir(NAME);
    let out = run_cli(&[
        "score",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--template",
        "{}",
        "--classes",
        &joined,
        "--tau",
        "0.05",
        image.to_str().unwrap(),
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    for key in [
        "image",
        "label",
        "similarities",
        "delta_energy",
        "energy",
        "mcm",
        "max_logit",
    ] {
        assert!(!l[key].is_null(), "missing {key}");
    }
    let sims: Vec<f64> = l["similarities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let img = normalised(&png.embedding);
    for (t, s) in classes.iter().zip(&sims) {
        let want: f64 = normalised(&t.embedding)
            .iter()
            .zip(&img)
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            (s - want).abs() < 1e-4,
            "similarity {s} vs transformers {want}"
        );
    }
    // The printed scores follow from the printed similarities (METHOD.md, τ = 0.05, c = 1, v = 0).
    let lse = |x: &[f64]| {
        let m = x.iter().cloned().fold(f64::MIN, f64::max);
        m / 0.05 + x.iter().map(|v| ((v - m) / 0.05).exp()).sum::<f64>().ln()
    };
    let top = (0..sims.len()).fold(0, |b, i| if sims[i] > sims[b] { i } else { b });
    let mut cropped = sims.clone();
    cropped[top] = 0.0;
    assert!((l["energy"].as_f64().unwrap() - lse(&sims)).abs() < 1e-9);
    assert!((l["delta_energy"].as_f64().unwrap() - (lse(&sims) - lse(&cropped))).abs() < 1e-9);
    assert!((l["max_logit"].as_f64().unwrap() - sims[top] / 0.05).abs() < 1e-9);
    assert_eq!(l["label"], classes[top].text);
}

#[test]
fn bad_input_fails_cleanly() {
    let data = data_or_skip!();
    let model = model_dir(NAME);
    let m = model.to_str().unwrap();
    let tmp = std::env::temp_dir().join(format!("deltaenergy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let not_image = tmp.join("notes.jpg");
    std::fs::write(&not_image, b"this is not an image").unwrap();
    let good = data.join(&reference(NAME).images[0].source);

    assert_clean_failure(
        &run_cli(&["embed", "--model", "/nonexistent/model", "--text", "x"]),
        "model not found",
    );
    let no_config = tmp.join("empty-dir");
    std::fs::create_dir_all(&no_config).unwrap();
    assert_clean_failure(
        &run_cli(&[
            "embed",
            "--model",
            no_config.to_str().unwrap(),
            "--text",
            "x",
        ]),
        "config.json",
    );
    assert_clean_failure(&run_cli(&["embed", "--model", m]), "nothing to embed");
    assert_clean_failure(
        &run_cli(&[
            "score",
            "--model",
            m,
            "--classes",
            " , ",
            good.to_str().unwrap(),
        ]),
        "class list is empty",
    );
    // A bad setting, each named in the error: a template without `{}`, τ 0, and f16 on the CPU.
    for (flag, value, says) in [
        ("--template", "a photo", "template"),
        ("--tau", "0", "tau"),
        ("--precision", "f16", "shader-f16"),
    ] {
        assert_clean_failure(
            &run_cli(&[
                "score",
                "--model",
                m,
                "--classes",
                "cat",
                flag,
                value,
                good.to_str().unwrap(),
            ]),
            says,
        );
    }
    // Training's settings fail before any step: a time limit of 0, an unknown augmentation.
    let classes = tmp.join("classes");
    std::fs::create_dir_all(classes.join("cat")).unwrap();
    std::fs::copy(&good, classes.join("cat/one.jpg")).unwrap();
    let config = root().join("tools/train/cifar-clip.json");
    let tokenizer = data.join("clip-tokenizer");
    for (flag, value, says) in [
        ("--time-limit", "0", "time limit"),
        ("--augment", "sideways", "unknown augmentation"),
    ] {
        assert_clean_failure(
            &run_cli(&[
                "train",
                "--config",
                config.to_str().unwrap(),
                "--data",
                classes.to_str().unwrap(),
                "--tokenizer",
                tokenizer.to_str().unwrap(),
                "--out",
                tmp.join("trained").to_str().unwrap(),
                flag,
                value,
            ]),
            says,
        );
    }
    // tune's validation families are checked, with the names it knows, before anything is read.
    let refused = run_cli(&[
        "tune",
        "--model",
        tmp.join("none.bundle").to_str().unwrap(),
        "--train",
        classes.to_str().unwrap(),
        "--validation-kinds",
        "gratings,digits",
        "--out",
        tmp.join("tuned.bundle").to_str().unwrap(),
    ]);
    assert_clean_failure(&refused, "unknown outlier family \"digits\"");
    assert_clean_failure(&refused, "gratings, polygons");
    // One bad image among good ones: the good one is still scored, the bad one reported.
    let out = run_cli(&[
        "score",
        "--json",
        "--model",
        m,
        "--classes",
        "cat,dog",
        not_image.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, "notes.jpg");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "the good image is still scored: {stdout}"
    );
    // A model directory with broken weights.
    let broken = tmp.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(model.join("config.json"), broken.join("config.json")).unwrap();
    std::fs::write(
        broken.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ",
    )
    .unwrap();
    assert_clean_failure(
        &run_cli(&["embed", "--model", broken.to_str().unwrap(), "--text", "x"]),
        "safetensors",
    );
    std::fs::remove_dir_all(&tmp).ok();
}

/// convert → inspect → score/embed with the bundle, as a user would.
#[test]
fn convert_inspect_and_use_a_bundle() {
    let data = data_or_skip!();
    let tmp = std::env::temp_dir().join(format!("deltaenergy-cli-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let model = model_dir(NAME);
    let out = tmp.join("tiny.bundle");
    let convert = run_cli(&[
        "convert",
        "--hf",
        model.to_str().unwrap(),
        "--quant",
        "q8",
        "--classes",
        "cat,dog,truck",
        "--tau",
        "0.05",
        "--threshold",
        "0.5",
        "--threshold-note",
        "test",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        convert.status.success(),
        "{}",
        String::from_utf8_lossy(&convert.stderr)
    );
    let printed = String::from_utf8(convert.stdout).unwrap();
    assert!(
        printed.contains("image tower (q8)") && printed.contains("tokenizer"),
        "{printed}"
    );

    let inspect = run_cli(&["inspect", out.to_str().unwrap()]);
    let text = String::from_utf8(inspect.stdout).unwrap();
    assert!(
        text.contains("verified") && text.contains("[cat, dog, truck]") && text.contains("τ=0.05"),
        "{text}"
    );
    assert!(text.contains("delta_energy ≥ 0.5"), "{text}");

    // Classes, τ and threshold come from the bundle.
    let r = reference(NAME);
    let png = data.join(&png_image(&r).source);
    let lines = json_lines(&run_cli(&[
        "score",
        "--json",
        "--model",
        out.to_str().unwrap(),
        png.to_str().unwrap(),
    ]));
    let l = &lines[0];
    assert!(["cat", "dog", "truck"].contains(&l["label"].as_str().unwrap()));
    assert_eq!(l["similarities"].as_array().unwrap().len(), 3);
    let de = l["delta_energy"].as_f64().unwrap();
    assert_eq!(l["ood"].as_bool().unwrap(), de < 0.5);
    let sims: Vec<f64> = l["similarities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let m = sims.iter().cloned().fold(f64::MIN, f64::max);
    assert!(
        (l["max_logit"].as_f64().unwrap() - m / 0.05).abs() < 1e-9,
        "τ from the bundle"
    );

    // The bundle's embeddings stay within q8's tolerance of the directory's.
    let e = json_lines(&run_cli(&[
        "embed",
        "--json",
        "--model",
        out.to_str().unwrap(),
        "--image",
        png.to_str().unwrap(),
    ]));
    let (cos, _) = compare(&floats(&e[0]["embedding"]), &png_image(&r).embedding);
    assert!(cos > 0.999, "{cos}");

    // i8 (W8A8) and u7 activations reach the kernel: other numbers, still near transformers'.
    let embed_with = |acts: &str| {
        run_cli(&[
            "embed",
            "--json",
            "--activations",
            acts,
            "--model",
            out.to_str().unwrap(),
            "--image",
            png.to_str().unwrap(),
        ])
    };
    let e8 = floats(&json_lines(&embed_with("i8"))[0]["embedding"]);
    assert_ne!(e8, floats(&e[0]["embedding"]));
    let (cos8, _) = compare(&e8, &png_image(&r).embedding);
    assert!(cos8 > 0.995, "{cos8}");
    let e7 = floats(&json_lines(&embed_with("u7"))[0]["embedding"]);
    assert!(e7 != e8 && e7 != floats(&e[0]["embedding"]));
    let (cos7, _) = compare(&e7, &png_image(&r).embedding);
    assert!(cos7 > 0.995, "{cos7}");
    assert_clean_failure(&embed_with("i4"), "i16, i8 or u7");

    // A damaged bundle is a clear error.
    let mut bytes = std::fs::read(&out).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let damaged = tmp.join("damaged.bundle");
    std::fs::write(&damaged, &bytes).unwrap();
    assert_clean_failure(
        &run_cli(&[
            "score",
            "--model",
            damaged.to_str().unwrap(),
            png.to_str().unwrap(),
        ]),
        "checksum",
    );
    assert_clean_failure(
        &run_cli(&["inspect", damaged.to_str().unwrap()]),
        "checksum",
    );
    std::fs::write(&damaged, b"").unwrap();
    assert_clean_failure(
        &run_cli(&["inspect", damaged.to_str().unwrap()]),
        "truncated",
    );
    std::fs::remove_dir_all(&tmp).ok();
}

/// A score name with a typo is refused before anything is written, with the names it knows.
#[test]
fn an_unknown_score_name_is_refused() {
    let out = std::env::temp_dir().join(format!("deltaenergy-typo-{}.bundle", std::process::id()));
    let model = model_dir(NAME);
    let r = run_cli(&[
        "convert",
        "--hf",
        model.to_str().unwrap(),
        "--threshold",
        "0.2",
        "--threshold-score",
        "delta-energy",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr
            .contains("unknown score `delta-energy` (known: delta_energy, energy, mcm, max_logit)"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// A Hub checkpoint's `tokenizer.json` serves the CLI like `vocab.json` + `merges.txt`.
#[test]
fn tokenizer_json_serves_like_vocab_and_merges() {
    let data = data_or_skip!();
    let dir = data.join("clip-tokenizer");
    let ids = |tok: &std::path::Path| {
        let out = run_cli(&[
            "tokenize",
            "--tokenizer",
            tok.to_str().unwrap(),
            "a photo of a café, 東京!",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(ids(&dir.join("tokenizer.json")), ids(&dir));
    let out =
        std::env::temp_dir().join(format!("deltaenergy-tokjson-{}.bundle", std::process::id()));
    let model = model_dir(NAME);
    let r = run_cli(&[
        "convert",
        "--hf",
        model.to_str().unwrap(),
        "--tokenizer",
        dir.join("tokenizer.json").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let _ = std::fs::remove_file(out);
}

/// `score --templates`: each class's feature is the normalised mean of its unit features under
/// the templates (CLIP's prompt ensemble), checked against `embed`'s features of each prompt
/// (themselves held to transformers above); a file without `{}` is refused.
#[test]
fn score_with_a_template_ensemble() {
    let data = data_or_skip!();
    let image = data.join(&png_image(&reference(NAME)).source);
    let model = model_dir(NAME);
    let m = model.to_str().unwrap();
    let tmp = std::env::temp_dir().join(format!("deltaenergy-ens-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let templates = ["a photo of a {}.", "{}", "a blurry drawing of the {}!"];
    let file = tmp.join("templates.json");
    std::fs::write(&file, serde_json::to_string(&templates).unwrap()).unwrap();
    let classes = ["cat", "sports car", "ship"];
    let out = run_cli(&[
        "score",
        "--json",
        "--model",
        m,
        "--templates",
        file.to_str().unwrap(),
        "--classes",
        &classes.join(","),
        image.to_str().unwrap(),
    ]);
    let sims: Vec<f64> = floats(&json_lines(&out)[0]["similarities"])
        .iter()
        .map(|&x| x as f64)
        .collect();
    let mut args = vec!["embed", "--json", "--model", m, "--image"];
    let img = image.to_str().unwrap().to_string();
    args.push(&img);
    let prompts: Vec<String> = classes
        .iter()
        .flat_map(|c| templates.iter().map(move |t| t.replace("{}", c)))
        .collect();
    for p in &prompts {
        args.extend(["--text", p.as_str()]);
    }
    let lines = json_lines(&run_cli(&args));
    let image_feature = normalised(&floats(&lines[0]["embedding"]));
    for (k, s) in sims.iter().enumerate() {
        let mut mean = vec![0.0; image_feature.len()];
        for j in 0..templates.len() {
            let t = normalised(&floats(&lines[1 + k * templates.len() + j]["embedding"]));
            mean.iter_mut().zip(t).for_each(|(a, b)| *a += b);
        }
        let n = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
        let want: f64 = mean
            .iter()
            .zip(&image_feature)
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / n;
        assert!((s - want).abs() < 1e-4, "class {k}: {s} vs {want}");
    }
    std::fs::write(&file, "no placeholder here\n").unwrap();
    let out = run_cli(&[
        "score",
        "--model",
        m,
        "--templates",
        file.to_str().unwrap(),
        "--classes",
        "cat,dog",
        image.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, "has no `{}`");
    let _ = std::fs::remove_dir_all(&tmp);
}
