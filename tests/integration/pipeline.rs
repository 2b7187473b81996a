//! The whole path a user takes, on a few dozen real images in seconds: `train` a CLIP from
//! scratch, `convert` it to a q8 bundle, `tune` EBM context vectors, `eval` every score.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;
use serde_json::Value;

fn ok(out: Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

/// `n` images of each class from `from/<class>` (skipping `skip`) linked into `to/<class>`.
fn link_classes(from: &Path, to: &Path, classes: &[&str], skip: usize, n: usize) {
    for c in classes {
        std::fs::create_dir_all(to.join(c)).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(from.join(c))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().skip(skip).take(n) {
            std::fs::copy(f, to.join(c).join(f.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn train_convert_tune_eval() {
    let tmp = std::env::temp_dir().join(format!("deltaenergy-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = data_or_skip!();
    let classes = ["airplane", "cat", "ship"];
    link_classes(
        &data.join("cifar10/train"),
        &tmp.join("train"),
        &classes,
        0,
        24,
    );
    link_classes(
        &data.join("cifar10/test"),
        &tmp.join("test"),
        &classes,
        0,
        6,
    );
    link_classes(
        &data.join("dtd"),
        &tmp.join("ood"),
        &["banded", "bubbly"],
        0,
        4,
    );
    // A file that is not an image, in the OOD folder: reported and skipped, not fatal.
    std::fs::write(tmp.join("ood/banded/notes.jpg"), b"not a jpeg").unwrap();
    let p = |rel: &str| tmp.join(rel).display().to_string();
    let config = root().join("tests/fixtures/train-tiny.json");

    let trained = ok(run_cli(&[
        "train",
        "--data",
        &p("train"),
        "--config",
        config.to_str().unwrap(),
        "--eval",
        &p("test"),
        "--epochs",
        "2",
        "--batch",
        "32",
        "--warmup",
        "2",
        // As the demo model: the first images of each class are left to `tune`, and both
        // halves of CLIP's loss train.
        "--hold-out",
        "12",
        "--text-to-image",
        "0.5",
        "--out",
        &p("model"),
    ]));
    assert!(trained["zero_shot_top1"].as_f64().unwrap() >= 0.0);
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.join("model/train.json")).unwrap())
            .unwrap();
    assert_eq!(log["history"].as_array().unwrap().len(), 2);
    assert_eq!(log["images"], 36);
    // 32 images split into groups of 32 for the text→image loss: one replica.
    assert_eq!(log["replicas"], 1);
    assert!(tmp.join("model/model.safetensors").exists());

    // The second stage of the demo model: fine-tuning with synthetic outliers.
    let tuned_in = ok(run_cli(&[
        "train",
        "--init",
        &p("model"),
        "--data",
        &p("train"),
        "--epochs",
        "1",
        "--batch",
        "32",
        "--hold-out",
        "12",
        "--text-to-image",
        "0.5",
        "--outliers",
        "4",
        "--out",
        &p("model-oe"),
    ]));
    assert!(tuned_in["zero_shot_top1"].is_null(), "no --eval given");
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.join("model-oe/train.json")).unwrap())
            .unwrap();
    assert_eq!(log["outliers"], 4);
    assert!(log["init"].as_str().unwrap().ends_with("model"), "{log}");
    // --config and --init exclude each other.
    let both = run_cli(&[
        "train",
        "--init",
        &p("model"),
        "--config",
        config.to_str().unwrap(),
        "--data",
        &p("train"),
        "--out",
        &p("nowhere"),
    ]);
    assert!(!both.status.success());

    let out = run_cli(&[
        "convert",
        "--hf",
        &p("model-oe"),
        "--quant",
        "q8",
        "--classes",
        "airplane,cat,ship",
        "--out",
        &p("base.bundle"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without --tau the bundle scores at the trained model's own temperature.
    let weights = std::fs::read(tmp.join("model-oe/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let ls = f32::from_le_bytes(
        st.tensor("logit_scale").unwrap().data()[..4]
            .try_into()
            .unwrap(),
    );
    let header = ok(run_cli(&["inspect", "--json", &p("base.bundle")]));
    let tau = header["score"]["tau"].as_f64().unwrap();
    let own = 1.0 / f64::from(ls).exp().min(100.0);
    assert!(
        (tau - own).abs() < 1e-12 * own,
        "τ {tau}, model's own {own}"
    );

    // Training goes on from a bundle too: its q8 weights load dequantized, its config with them.
    let from_bundle = ok(run_cli(&[
        "train",
        "--init",
        &p("base.bundle"),
        "--data",
        &p("train"),
        "--epochs",
        "1",
        "--batch",
        "32",
        "--hold-out",
        "12",
        "--out",
        &p("model-from-bundle"),
    ]));
    assert!(from_bundle["zero_shot_top1"].is_null());
    let config_of = |dir: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(tmp.join(dir).join("config.json")).unwrap())
            .unwrap()
    };
    assert_eq!(
        config_of("model-from-bundle")["vision_config"]["hidden_size"],
        config_of("model-oe")["vision_config"]["hidden_size"]
    );

    // With the data folder as $DELTAENERGY_DATA, the bundle records its paths relative to it
    // (the same text on every machine).
    let tuned = ok(run_cli_env(
        &[
            "tune",
            "--model",
            &p("base.bundle"),
            "--train",
            &p("train"),
            "--shots",
            "4",
            "--calibration",
            "8",
            "--epochs",
            "3",
            "--lambda",
            "1",
            "--no-cache",
            "--validation-outliers",
            "100",
            "--out",
            &p("ebm.bundle"),
        ],
        &[("DELTAENERGY_DATA", &tmp)],
    ));
    assert_eq!(tuned["calibration_images"], 24);
    assert!(tuned["threshold"].as_f64().unwrap().is_finite());
    // c and τ chosen on the validation split: every pair of the grid that three classes allow
    // (c 1 and 2, three τ) tried, and the chosen one is what the bundle carries.
    let trials = tuned["selection"].as_array().unwrap();
    assert_eq!(trials.len(), 6, "{trials:?}");
    assert!(trials.iter().all(|t| t["c"].as_u64().unwrap() < 3));
    let header = ok(run_cli(&["inspect", "--json", &p("ebm.bundle")]));
    assert_eq!(header["score"]["c"], tuned["score"]["c"]);
    assert_eq!(header["score"]["tau"], tuned["score"]["tau"]);
    let note = header["threshold"]["calibration"].as_str().unwrap();
    assert!(
        note.contains("24 images of $DELTAENERGY_DATA/train "),
        "{note}"
    );
    // Of the families held out of training, by default.
    assert!(
        note.contains("chosen on them against 100 generated outliers (gratings, polygons)"),
        "{note}"
    );
    assert_eq!(tuned["validation_kinds"], "gratings, polygons");
    // The report: the loss of every epoch, accuracy on the held-out calibration images before
    // (the bundle's own prompt) and after, the bundle's size.
    assert_eq!(tuned["loss"].as_array().unwrap().len(), 3);
    for when in ["before", "after"] {
        let a = tuned[when]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{when}: {a}");
    }
    let bytes = std::fs::metadata(p("ebm.bundle")).unwrap().len();
    assert_eq!(tuned["bytes"].as_u64(), Some(bytes));

    // No calibration images: the bundle's threshold and score settings are kept, and there is
    // nothing held out to report accuracy on.
    let again = ok(run_cli(&[
        "tune",
        "--model",
        &p("ebm.bundle"),
        "--train",
        &p("train"),
        "--shots",
        "4",
        "--calibration",
        "0",
        "--epochs",
        "2",
        "--no-cache",
        "--out",
        &p("ebm-again.bundle"),
    ]));
    assert_eq!(again["calibration_images"], 0);
    assert_eq!(again["threshold"], tuned["threshold"]);
    assert!(again["before"]["accuracy"].is_null() && again["after"]["accuracy"].is_null());
    let kept = ok(run_cli(&["inspect", "--json", &p("ebm-again.bundle")]));
    assert_eq!(kept["score"], header["score"]);
    assert_eq!(kept["threshold"]["value"], header["threshold"]["value"]);

    let (cache, ebm, test, ood) = (p("cache"), p("ebm.bundle"), p("test"), p("ood"));
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            &ebm,
            "--id",
            &test,
            "--covariate",
            &test,
            "--ood",
            &ood,
            "--json",
            "--cache",
            &cache,
        ];
        args.extend_from_slice(extra);
        ok(run_cli(&args))
    };
    let report = eval(&["--plots", &p("plots")]);
    let id_acc = report["id_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&id_acc));
    assert_eq!(report["covariate_accuracy"].as_f64().unwrap(), id_acc);
    for score in ["delta_energy", "energy", "mcm", "max_logit"] {
        let m = &report["scores"][score]["ood"];
        for key in ["auroc", "fpr95", "aupr_in", "aupr_out"] {
            let v = m[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{score}.{key} in {report}"));
            assert!((0.0..=1.0).contains(&v), "{score}.{key} = {v}");
        }
    }
    for plot in ["delta_energy.svg", "energy.svg"] {
        let svg = std::fs::read_to_string(tmp.join("plots").join(plot)).unwrap();
        assert!(svg.starts_with("<svg"), "{plot}");
    }
    // The second run reads every feature from the cache and reports the same numbers.
    assert_eq!(eval(&[]), report);
    let inspect = run_cli(&["inspect", &p("ebm.bundle")]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success() && text.contains("context"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn bad_inputs_to_the_new_commands() {
    let _data = data_or_skip!();
    let tmp = std::env::temp_dir().join(format!("deltaenergy-pipeline-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("empty")).unwrap();
    let p = |rel: &str| tmp.join(rel).display().to_string();
    let fixture = model_dir("tiny-quickgelu-p8").display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "eval",
                "--model",
                &fixture,
                "--id",
                &p("empty"),
                "--ood",
                &p("empty"),
            ],
            "no class folders",
        ),
        (
            &[
                "tune",
                "--model",
                &fixture,
                "--train",
                &p("empty"),
                "--out",
                &p("x"),
            ],
            "directory",
        ),
        (
            &[
                "train",
                "--data",
                &p("empty"),
                "--config",
                &p("none.json"),
                "--out",
                &p("m"),
            ],
            "none.json",
        ),
        (
            &[
                "tune",
                "--model",
                &p("missing.bundle"),
                "--train",
                &p("empty"),
                "--out",
                &p("x"),
            ],
            "missing.bundle",
        ),
    ];
    for (args, needle) in cases {
        let out = run_cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("internal error"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
