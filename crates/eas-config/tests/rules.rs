//! One test per validation rule: start from a valid description, break one thing, and check
//! the diagnostic's severity, path and message.

mod common;

use common::{expect, fixture_value, remove, render, set};
use eas_config::{Severity::*, validate};
use serde_json::{Value, json};

const MI: &str = "/plugins/0/config/model_info/frozen.pb";

fn advanced() -> Value {
    fixture_value("spec/advanced.json")
}

fn diags_after(f: impl FnOnce(&mut Value)) -> Vec<eas_config::Diagnostic> {
    let mut d = advanced();
    f(&mut d);
    validate(&d)
}

#[test]
fn baseline_is_clean() {
    let d = validate(&advanced());
    assert!(d.is_empty(), "{}", render(&d));
}

#[test]
fn root_must_be_an_object() {
    let d = validate(&json!([1, 2]));
    expect(&d, Error, "", "JSON object");
}

#[test]
fn missing_command_and_image() {
    let d = diags_after(|d| {
        remove(d, "/plugins/0/command");
        remove(d, "/plugins/0/image");
    });
    expect(
        &d,
        Error,
        "/plugins/0/command",
        "missing required key `command`",
    );
    let e = expect(
        &d,
        Error,
        "/plugins/0/image",
        "missing required key `image`",
    );
    assert!(
        e.expected.unwrap().contains("gpu_latest"),
        "the fix names the right image"
    );
}

#[test]
fn missing_name_processor_model_path() {
    let d = diags_after(|d| {
        remove(d, "/name");
        remove(d, "/processor");
        remove(d, "/model_path");
    });
    expect(&d, Error, "/name", "missing required key");
    expect(&d, Error, "/processor", "missing required key");
    expect(&d, Error, "/model_path", "missing required key");
}

#[test]
fn wrong_types_become_diagnostics_with_paths() {
    let d = diags_after(|d| {
        set(d, "/metadata/gpu", json!("one"));
        set(d, "/plugins/0/gpu", json!(1.5));
        set(d, "/name", json!(7));
        set(
            d,
            "/plugins/0/config/model_info/frozen.pb/inputs",
            json!("input_ids_a_1"),
        );
    });
    expect(&d, Error, "/metadata/gpu", "found \"one\"");
    expect(&d, Error, "/plugins/0/gpu", "not a whole number");
    expect(&d, Error, "/name", "wrong type");
    expect(
        &d,
        Error,
        &format!("{MI}/inputs"),
        "expected a list of node names",
    );
}

#[test]
fn null_is_refused() {
    let d = diags_after(|d| set(d, "/resource", Value::Null));
    expect(&d, Error, "/resource", "null is not allowed");
}

#[test]
fn unknown_mode_and_optimize_for() {
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/command",
            json!("blade --mode eas --optimize_for tpu"),
        )
    });
    expect(&d, Error, "/plugins/0/command", "unknown --mode");
    expect(
        &d,
        Error,
        "/plugins/0/command",
        "unknown --optimize_for device",
    );
}

#[test]
fn unknown_flag_in_command() {
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/command",
            json!("blade --mode eas_plugin --optimize_for gpu --fp16 on"),
        )
    });
    expect(
        &d,
        Error,
        "/plugins/0/command",
        "unknown word in the plugin command (found \"--fp16\"",
    );
}

#[test]
fn command_image_processor_disagree_on_device() {
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/command",
            json!("blade --mode eas_plugin --optimize_for cpu"),
        )
    });
    expect(
        &d,
        Error,
        "/plugins/0/command",
        "optimizes for cpu but processor tensorflow_gpu_1.15 runs on gpu",
    );
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/image",
            json!("registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest"),
        )
    });
    expect(
        &d,
        Error,
        "/plugins/0/image",
        "image cpu_latest is for cpu but processor tensorflow_gpu_1.15 runs on gpu",
    );
    // Without a known processor, command and image are compared with each other.
    let mut doc = fixture_value("spec/basic.json");
    set(&mut doc, "/processor", json!("tensorflow_cpu_9"));
    set(
        &mut doc,
        "/plugins/0/image",
        json!("registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:gpu_latest"),
    );
    let d = validate(&doc);
    expect(
        &d,
        Error,
        "/plugins/0/image",
        "is for gpu but the plugin optimizes for cpu",
    );
}

#[test]
fn image_cuda_vs_processor_cuda() {
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/image",
            json!("registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cu110_latest"),
        )
    });
    let e = expect(
        &d,
        Error,
        "/plugins/0/image",
        "built for CUDA 11.0 but processor tensorflow_gpu_1.15 uses CUDA 10.0",
    );
    assert!(e.expected.unwrap().contains(":gpu_latest"));
}

#[test]
fn metadata_cuda_vs_processor_cuda() {
    let d = diags_after(|d| set(d, "/metadata/cuda", json!("11.0")));
    expect(
        &d,
        Error,
        "/metadata/cuda",
        "processor tensorflow_gpu_1.15 uses CUDA 10.0",
    );
    let d = diags_after(|d| set(d, "/metadata/cuda", json!("ten")));
    expect(&d, Error, "/metadata/cuda", "not a CUDA version");
}

#[test]
fn gpu_optimization_needs_resource_and_a_gpu() {
    let d = diags_after(|d| remove(d, "/plugins/0/resource"));
    expect(
        &d,
        Error,
        "/plugins/0/resource",
        "needs the plugin's `resource`",
    );
    let d = diags_after(|d| set(d, "/plugins/0/gpu", json!(0)));
    expect(&d, Error, "/plugins/0/gpu", "needs at least one GPU");
    let d = diags_after(|d| set(d, "/plugins/0/gpu", json!(-2)));
    expect(&d, Error, "/plugins/0/gpu", "needs at least one GPU");
    let d = diags_after(|d| set(d, "/plugins/0/resource", json!("A10_8CORE")));
    expect(
        &d,
        Warning,
        "/plugins/0/resource",
        "not a GPU resource group",
    );
}

#[test]
fn cpu_optimization_with_gpus_warns() {
    let mut doc = fixture_value("spec/basic.json");
    set(&mut doc, "/plugins/0/gpu", json!(1));
    set(&mut doc, "/metadata/gpu", json!(1));
    let d = validate(&doc);
    expect(&d, Warning, "/plugins/0/gpu", "does not use GPUs");
    expect(&d, Warning, "/metadata/gpu", "GPUs would sit idle");
}

#[test]
fn gpu_processor_without_gpus_warns() {
    let d = diags_after(|d| set(d, "/metadata/gpu", json!(0)));
    expect(&d, Warning, "/metadata/gpu", "asks for no GPU");
}

#[test]
fn more_than_one_model() {
    let d = diags_after(|d| set(d, "/plugins/0/config/model_info/other.pb", json!({})));
    expect(
        &d,
        Error,
        "/plugins/0/config/model_info/other.pb",
        "one model only",
    );
}

#[test]
fn empty_model_info_warns() {
    let d = diags_after(|d| set(d, "/plugins/0/config/model_info", json!({})));
    expect(
        &d,
        Warning,
        "/plugins/0/config/model_info",
        "model_info is empty",
    );
}

#[test]
fn paths_must_stay_inside_model_path() {
    let d = diags_after(|d| {
        set(d, &format!("{MI}/test_data"), json!("/data/test.npy"));
        set(
            d,
            &format!("{MI}/calibration_dataset"),
            json!("../calib.npy"),
        );
        set(d, &format!("{MI}/optimization_level"), json!("o2"));
    });
    expect(&d, Error, &format!("{MI}/test_data"), "absolute");
    expect(
        &d,
        Error,
        &format!("{MI}/calibration_dataset"),
        "climbs out",
    );
    let mut doc = advanced();
    let items = doc.pointer(MI).unwrap().clone();
    set(
        &mut doc,
        "/plugins/0/config/model_info",
        json!({ "../frozen.pb": items }),
    );
    let d = validate(&doc);
    expect(
        &d,
        Error,
        "/plugins/0/config/model_info/..~1frozen.pb",
        "model file name: the path climbs out",
    );
}

#[test]
fn shape_sets_of_different_lengths_and_vs_inputs() {
    let d = diags_after(|d| {
        set(
            d,
            &format!("{MI}/input_shapes"),
            json!([["1*512"], ["1*512", "3*256"]]),
        )
    });
    expect(
        &d,
        Error,
        &format!("{MI}/input_shapes/1"),
        "shape set 1 has 2 shapes but inputs names 1",
    );
    let d = diags_after(|d| {
        remove(d, &format!("{MI}/inputs"));
        set(
            d,
            &format!("{MI}/input_shapes"),
            json!([["1*512", "3*256"], ["5*512"]]),
        );
    });
    expect(
        &d,
        Error,
        &format!("{MI}/input_shapes/1"),
        "different lengths: set 0 has 2, set 1 has 1",
    );
}

#[test]
fn unparseable_shapes() {
    let d = diags_after(|d| {
        set(
            d,
            &format!("{MI}/input_shapes"),
            json!([["1*512"], ["-1*512"], ["0*2"], ["1x512"], [5]]),
        )
    });
    expect(&d, Error, &format!("{MI}/input_shapes/1/0"), "dynamic");
    expect(&d, Error, &format!("{MI}/input_shapes/2/0"), "zero");
    expect(&d, Error, &format!("{MI}/input_shapes/3/0"), "not a number");
    expect(&d, Error, &format!("{MI}/input_shapes/4/0"), "wrong type");
}

#[test]
fn ranges_unparseable_empty_inverted_and_lengths() {
    let d = diags_after(|d| {
        set(
            d,
            &format!("{MI}/input_ranges"),
            json!([
                ["[0.1,0.4]"],
                ["[]"],
                ["[0.9,0.1]"],
                ["[a,1]"],
                ["[0,1]", "[a,f]"]
            ]),
        )
    });
    expect(&d, Error, &format!("{MI}/input_ranges/1/0"), "empty");
    expect(&d, Error, &format!("{MI}/input_ranges/2/0"), "inverted");
    expect(&d, Error, &format!("{MI}/input_ranges/3/0"), "mixes");
    expect(
        &d,
        Error,
        &format!("{MI}/input_ranges/4"),
        "range set 4 has 2 ranges but inputs names 1",
    );
}

#[test]
fn ranges_and_shapes_disagree_without_inputs() {
    let d = diags_after(|d| {
        remove(d, &format!("{MI}/inputs"));
        set(
            d,
            &format!("{MI}/input_shapes"),
            json!([["1*512", "3*256"]]),
        );
        set(d, &format!("{MI}/input_ranges"), json!([["[0,1]"]]));
    });
    expect(
        &d,
        Error,
        &format!("{MI}/input_ranges"),
        "disagree on the number of inputs",
    );
}

#[test]
fn calibration_with_o1_is_ignored() {
    let d = diags_after(|d| set(d, &format!("{MI}/calibration_dataset"), json!("calib.npy")));
    expect(
        &d,
        Warning,
        &format!("{MI}/calibration_dataset"),
        "ignored at optimization_level o1",
    );
}

#[test]
fn quantization_with_o1_is_ignored() {
    let d = diags_after(|d| {
        set(
            d,
            &format!("{MI}/quantization"),
            json!({"weight_adjustment": "true"}),
        )
    });
    expect(
        &d,
        Warning,
        &format!("{MI}/quantization"),
        "ignored at optimization_level o1",
    );
}

#[test]
fn o2_without_calibration_is_online_int8() {
    let d = diags_after(|d| set(d, &format!("{MI}/optimization_level"), json!("o2")));
    expect(&d, Note, MI, "online INT8");
    assert_eq!(d.len(), 1, "{}", render(&d));
}

#[test]
fn unknown_level_with_did_you_mean() {
    let d = diags_after(|d| set(d, &format!("{MI}/optimization_level"), json!("O2")));
    expect(
        &d,
        Error,
        &format!("{MI}/optimization_level"),
        "did you mean \"o2\"?",
    );
}

#[test]
fn weight_adjustment_values() {
    let d = diags_after(|d| {
        set(d, &format!("{MI}/optimization_level"), json!("o2"));
        set(d, &format!("{MI}/calibration_dataset"), json!("c.npy"));
        set(
            d,
            &format!("{MI}/quantization"),
            json!({"weight_adjustment": "yes", "bias_correction": 1}),
        );
    });
    expect(
        &d,
        Error,
        &format!("{MI}/quantization/weight_adjustment"),
        "not a boolean",
    );
    expect(
        &d,
        Warning,
        &format!("{MI}/quantization/bias_correction"),
        "unknown key in quantization",
    );
    for ok in [json!("false"), json!(true)] {
        let d = diags_after(|d| {
            set(d, &format!("{MI}/optimization_level"), json!("o2"));
            set(d, &format!("{MI}/calibration_dataset"), json!("c.npy"));
            set(
                d,
                &format!("{MI}/quantization"),
                json!({ "weight_adjustment": ok }),
            );
        });
        assert!(d.is_empty(), "{}", render(&d));
    }
}

#[test]
fn unknown_keys_warn_with_did_you_mean() {
    let d = diags_after(|d| {
        set(d, "/plugins/0/imgae", json!("x"));
        set(d, &format!("{MI}/test_dataset"), json!("x.npy"));
        set(d, "/plugins/0/config/model_infos", json!({}));
        set(d, "/procesor", json!("x"));
        set(d, "/metadata/memroy", json!(1));
        set(d, "/completely_unrelated_eas_key", json!(1));
    });
    expect(&d, Warning, "/plugins/0/imgae", "did you mean \"image\"?");
    expect(
        &d,
        Warning,
        &format!("{MI}/test_dataset"),
        "did you mean \"test_data\"?",
    );
    expect(
        &d,
        Warning,
        "/plugins/0/config/model_infos",
        "did you mean \"model_info\"?",
    );
    expect(&d, Warning, "/procesor", "did you mean \"processor\"?");
    expect(&d, Warning, "/metadata/memroy", "did you mean \"memory\"?");
    assert!(
        !d.iter().any(|x| x.path == "/completely_unrelated_eas_key"),
        "top-level EAS keys we do not model are kept silently"
    );
}

#[test]
fn unknown_processor_with_did_you_mean() {
    let d = diags_after(|d| set(d, "/processor", json!("tensorflow_gpu_1.16")));
    expect(
        &d,
        Error,
        "/processor",
        "did you mean \"tensorflow_gpu_1.15\"?",
    );
    // Without plugins EAS has other processors: only a near miss is worth a warning.
    let mut doc = fixture_value("spec/without_plugin.json");
    set(&mut doc, "/processor", json!("tensorflow_cpu_1.51"));
    expect(&validate(&doc), Warning, "/processor", "did you mean");
    set(&mut doc, "/processor", json!("pmml"));
    assert!(validate(&doc).is_empty());
}

#[test]
fn plugins_not_a_list_or_empty() {
    let d = diags_after(|d| set(d, "/plugins", json!({"command": "x"})));
    expect(&d, Error, "/plugins", "expected a list of plugin objects");
    let d = diags_after(|d| set(d, "/plugins", json!([])));
    expect(&d, Warning, "/plugins", "empty");
    let d = diags_after(|d| set(d, "/plugins/0", json!("blade")));
    expect(&d, Error, "/plugins/0", "expected an object");
}

#[test]
fn second_plugin_warns() {
    let d = diags_after(|d| {
        let p = d.pointer("/plugins/0").unwrap().clone();
        set(d, "/plugins/1", p);
    });
    expect(&d, Warning, "/plugins/1", "more than one plugin");
}

#[test]
fn duplicate_and_empty_node_names() {
    let d = diags_after(|d| {
        set(d, &format!("{MI}/outputs"), json!(["a", "b", "a", ""]));
    });
    expect(
        &d,
        Error,
        &format!("{MI}/outputs/2"),
        "duplicate name in outputs (also at index 0)",
    );
    expect(&d, Error, &format!("{MI}/outputs/3"), "empty node name");
}

#[test]
fn instance_memory_cpu_must_be_positive() {
    let d = diags_after(|d| {
        set(d, "/metadata/instance", json!(0));
        set(d, "/metadata/memory", json!(-4096));
        set(d, "/metadata/cpu", json!(4.0));
    });
    expect(&d, Error, "/metadata/instance", "at least 1");
    expect(&d, Error, "/metadata/memory", "at least 1");
    expect(&d, Error, "/metadata/cpu", "not a whole number");
    let d = diags_after(|d| set(d, "/metadata/memory", json!(4)));
    expect(&d, Warning, "/metadata/memory", "memory is in MB");
}

#[test]
fn name_format() {
    let d = diags_after(|d| set(d, "/name", json!("My-Service")));
    expect(&d, Error, "/name", "e.g. \"my_service\"");
    let d = diags_after(|d| set(d, "/name", json!("")));
    expect(&d, Error, "/name", "empty");
    let d = diags_after(|d| set(d, "/name", json!("a".repeat(65))));
    expect(&d, Error, "/name", "longer than 64");
}

#[test]
fn aux_data_kind_vs_framework() {
    let d = diags_after(|d| set(d, &format!("{MI}/test_data"), json!("test.pth")));
    expect(
        &d,
        Warning,
        &format!("{MI}/test_data"),
        "a .pth file but TensorFlow auxiliary data is .npy",
    );
    let d = diags_after(|d| set(d, &format!("{MI}/test_data"), json!("test.csv")));
    expect(&d, Warning, &format!("{MI}/test_data"), "not a .npy file");
}

#[test]
fn pytorch_inputs_outputs_warn_and_want_pth() {
    let d = diags_after(|d| {
        set(d, "/processor", json!("pytorch_gpu_1.6"));
        let items = d.pointer(MI).unwrap().clone();
        set(
            d,
            "/plugins/0/config/model_info",
            json!({ "model.pt": items }),
        );
    });
    let mi = "/plugins/0/config/model_info/model.pt";
    expect(&d, Warning, &format!("{mi}/inputs"), "not used for PyTorch");
    expect(
        &d,
        Warning,
        &format!("{mi}/outputs"),
        "not used for PyTorch",
    );
    expect(
        &d,
        Warning,
        &format!("{mi}/test_data"),
        "a .npy file but PyTorch auxiliary data is .pth",
    );
}

#[test]
fn model_file_kind_vs_framework() {
    let d = diags_after(|d| {
        d.as_object_mut()
            .unwrap()
            .insert("processor".into(), json!("pytorch_gpu_1.6"))
            .map(|_| ())
            .unwrap()
    });
    expect(
        &d,
        Warning,
        MI,
        "looks like a TensorFlow model but the processor is PyTorch",
    );
}

#[test]
fn image_tag_and_repository() {
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/image",
            json!("registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:gpu_lates"),
        )
    });
    expect(
        &d,
        Error,
        "/plugins/0/image",
        "did you mean \"gpu_latest\"?",
    );
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/image",
            json!("registry.cn-shanghai.aliyuncs.com/eas/blade:gpu_latest"),
        )
    });
    expect(
        &d,
        Error,
        "/plugins/0/image",
        "not the Blade plugin image repository",
    );
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/image",
            json!("example.com/eas/pai-blade-deploy:gpu_latest"),
        )
    });
    expect(
        &d,
        Warning,
        "/plugins/0/image",
        "not an Alibaba Cloud registry",
    );
}

#[test]
fn model_path_forms() {
    for ok in [
        "oss://bucket/m/",
        "models/bert",
        "/abs/m.tar.gz",
        "file:///abs/m",
        "https://h/m.zip",
    ] {
        let d = diags_after(|d| set(d, "/model_path", json!(ok)));
        assert!(d.is_empty(), "{ok}: {}", render(&d));
    }
    let d = diags_after(|d| set(d, "/model_path", json!("")));
    expect(&d, Error, "/model_path", "empty");
    let d = diags_after(|d| set(d, "/model_path", json!("s3://bucket/m")));
    expect(&d, Warning, "/model_path", "unrecognized URL scheme");
    let d = diags_after(|d| set(d, "/model_path", json!("file://relative")));
    expect(&d, Error, "/model_path", "absolute path");
}

#[test]
fn every_problem_is_reported_at_once() {
    let d = diags_after(|d| {
        set(
            d,
            "/plugins/0/command",
            json!("blade --mode x --optimize_for gpu"),
        );
        set(d, "/plugins/0/gpu", json!(0));
        set(d, &format!("{MI}/input_shapes"), json!([["0"]]));
        set(d, "/metadata/instance", json!(0));
    });
    assert_eq!(
        d.iter().filter(|x| x.is_error()).count(),
        4,
        "{}",
        render(&d)
    );
}

#[test]
fn typed_description_validates_too() {
    let desc = eas_config::parse(&common::fixture("spec/advanced.json")).unwrap();
    assert!(validate(&desc).is_empty());
    let mut bad = desc.clone();
    bad.plugins.as_mut().unwrap()[0].image = "nope".into();
    expect(
        &validate(&bad),
        Error,
        "/plugins/0/image",
        "no registry host",
    );
}

#[test]
fn same_input_changes_rank_or_range_kind_across_sets() {
    let d = diags_after(|d| {
        set(
            d,
            &format!("{MI}/input_shapes"),
            json!([["1*512"], ["5*512*3"]]),
        );
        set(
            d,
            &format!("{MI}/input_ranges"),
            json!([["[0,1]"], ["[a,f]"]]),
        );
    });
    expect(
        &d,
        Warning,
        &format!("{MI}/input_shapes/1/0"),
        "input 0 is rank 3 here but rank 2 in set 0",
    );
    expect(
        &d,
        Warning,
        &format!("{MI}/input_ranges/1/0"),
        "input 0 is a character range here but a numeric range in set 0",
    );
    assert_eq!(d.len(), 2, "{}", render(&d));
}

#[test]
fn output_that_is_also_an_input() {
    let d = diags_after(|d| {
        set(
            d,
            &format!("{MI}/outputs"),
            json!(["l2_normalize", "input_ids_a_1"]),
        )
    });
    expect(
        &d,
        Warning,
        &format!("{MI}/outputs/1"),
        "also listed in inputs",
    );
}

#[test]
fn calibrating_on_the_test_data() {
    let d = diags_after(|d| {
        set(d, &format!("{MI}/optimization_level"), json!("o2"));
        set(
            d,
            &format!("{MI}/calibration_dataset"),
            json!("./test_len9240_bc1.npy"),
        );
    });
    expect(
        &d,
        Warning,
        &format!("{MI}/calibration_dataset"),
        "is the test_data file",
    );
    assert_eq!(d.len(), 1, "{}", render(&d));
}
