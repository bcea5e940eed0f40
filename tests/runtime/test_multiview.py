"""A two-camera model (front, wrist) exported with the real exporter and served by the runtime.

The manifest's ``cameras`` and ``contract`` sections (format version 2), version 1 manifests read
as one camera with the derived contract, ``infer`` with a mapping camera -> frame and its errors,
parity with PyTorch through both modes and both serving paths.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_helpers import CAMERAS, CONTRACT, MULTIVIEW_ADAPTERS, frame, raw_proprio, replace_file, views

from vla_adapter_ros import processing
from vla_adapter_ros.contract import RobotContract, default_contract
from vla_adapter_ros.runtime.errors import InputError, ManifestError
from vla_adapter_ros.runtime.manifest import CameraInput, Manifest, derived_contract
from vla_adapter_ros.runtime.policy import OnnxPolicy
from vla_adapter_ros.runtime.providers import ProviderConfig

BUNDLED_ACTIONS = ("dx", "dy", "dz", "gripper")
PROPRIO = ("ee_x", "ee_y", "ee_z", "gripper")


def cpu(serving: str = "plain") -> ProviderConfig:
    return ProviderConfig(providers=("cpu",), serving=serving, intra_op_threads=1)


def edit_manifest(model_dir, change):
    path = model_dir / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    replace_file(path, json.dumps(data).encode())


@pytest.fixture(scope="module")
def multiview_dir(multiview_exported):
    return multiview_exported[0]


@pytest.fixture(scope="module")
def policy(multiview_dir):
    with OnnxPolicy.from_dir(multiview_dir, providers=cpu()) as p:
        yield p


def batch(manifest, n: int, seed: int = 0):
    """(B, V, 3, H, W) images, (B, E) embeddings, (B, P) proprio."""
    rng = np.random.default_rng(seed)
    h, w = manifest.image_size
    return (rng.uniform(-1, 1, (n, len(manifest.cameras), 3, h, w)).astype(np.float32),
            rng.normal(size=(n, manifest.language.embedding_dim)).astype(np.float32),
            rng.normal(size=(n, len(manifest.proprio_names))).astype(np.float32))


def test_manifest_has_cameras_and_the_checkpoints_contract(multiview_dir):
    m = Manifest.load(multiview_dir)
    assert m.format_version == 2 and m.camera_names == CAMERAS
    assert m.cameras == (CameraInput("front", "image.front", 32, 32), CameraInput("wrist", "image.wrist", 32, 32))
    assert [t.name for t in m.inputs] == ["image.front", "image.wrist", "instruction_embedding", "proprio"]
    assert [t.shape for t in m.inputs[:2]] == [("batch", 3, 32, 32)] * 2
    assert m.contract == RobotContract.from_dict(CONTRACT)  # contract.yaml beside the checkpoint
    assert m.actions.low == (-0.5, -0.5, -0.25, -1.0) and m.actions.high == (0.5, 0.5, 0.25, 1.0)  # its bounds
    on_disk = json.loads((multiview_dir / "manifest.json").read_text())
    assert m.to_dict() == on_disk and on_disk["cameras"][1] == {"name": "wrist", "input": "image.wrist",
                                                                "height": 32, "width": 32}
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict())), multiview_dir) == m
    rows = on_disk["parity"]["rows"]
    checked = {(r["artifact"], r["adapter"]) for r in rows if r["check"] in ("policy", "fp16")}
    assert checked == {(a, n) for a in ("shared", "merged", "merged_fp16") for n in MULTIVIEW_ADAPTERS}
    assert all(r["passed"] for r in rows) and {r["adapter"] for r in rows if r["check"] == "infer"} == set(MULTIVIEW_ADAPTERS)


@pytest.mark.parametrize("mode", ["shared", "merged"])
@pytest.mark.parametrize("n", [1, 3])
def test_network_parity_with_pytorch(multiview_exported, mode, n):
    model_dir, model = multiview_exported
    if model is None:
        pytest.skip("no PyTorch reference (prebuilt model)")
    import torch

    from vla_adapter_ros.core.adapters import set_adapter

    with OnnxPolicy.from_dir(model_dir, providers=cpu(), mode=mode, warmup=False) as p:
        x = batch(p.manifest, n, seed=n)
        for name in MULTIVIEW_ADAPTERS:
            with torch.no_grad():
                set_adapter(model, name)
                ref = model.predict(*(torch.from_numpy(a) for a in x)).numpy()
                set_adapter(model, None)
            got = p.run_network(*x, adapter=name)
            assert np.abs(got - ref).max() <= 1e-4, (mode, name)
            by_camera = dict(zip(CAMERAS, (x[0][:, 0], x[0][:, 1]), strict=True))
            assert np.array_equal(p.run_network(by_camera, *x[1:], adapter=name), got)


def test_infer_takes_one_frame_per_camera_like_the_training_path(multiview_exported, policy):
    model_dir, model = multiview_exported
    m = policy.manifest
    frames, proprio = views(), raw_proprio(m)
    result = policy.infer(frames, "reach the red block", proprio)
    assert result.actions.shape == (3, 4) and result.adapter == "reach"
    assert np.all(result.actions >= np.array(m.actions.low)) and np.all(result.actions <= np.array(m.actions.high))
    # the mapping's order does not matter (the views go to their cameras' inputs)
    again = policy.infer(dict(reversed(list(frames.items()))), "reach the red block", proprio)
    assert np.array_equal(again.actions, result.actions)
    if model is None:
        return
    import torch

    embedding = policy.language.encode_batch(["reach the red block"])
    image = np.stack([processing.preprocess_image(frames[c], m.image_size) for c in CAMERAS])[None]  # (1, V, 3, H, W)
    with torch.no_grad():
        from vla_adapter_ros.core.adapters import set_adapter

        set_adapter(model, "reach")
        prop = torch.from_numpy(model.stats["proprio"].normalize(proprio)[None])
        expected = model.denormalize_actions(model.predict(torch.from_numpy(image), torch.from_numpy(embedding), prop))
        set_adapter(model, None)
    expected = np.clip(expected[0].numpy(), m.actions.low, m.actions.high)
    assert np.abs(result.actions - expected).max() <= 1e-4


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ({"front": frame()}, r"cameras \['front'\]: missing \['wrist'\], unknown \[\]; this model takes one "
                             r"\(H, W, 3\) uint8 frame for each of \['front', 'wrist'\]"),
        ({**views(), "side": frame()}, r"missing \[\], unknown \['side'\]"),
        ({"front": frame(), "left": frame()}, r"missing \['wrist'\], unknown \['left'\]"),
        (frame(), r"this model has 2 cameras \['front', 'wrist'\]: pass a mapping camera name -> \(H, W, 3\) uint8 "
                  r"frame, got ndarray"),
        ({"front": frame(), "wrist": frame()[..., 0]}, r"camera 'wrist': expected a \(H, W, 3\) uint8 RGB image, got "
                                                      r"\(120, 160\)"),
        ({"front": frame().astype(np.float32), "wrist": frame()}, r"camera 'front': expected a \(H, W, 3\) uint8"),
    ],
)
def test_wrong_cameras_are_input_errors_naming_them(policy, images, message):
    with pytest.raises(InputError, match=message):
        policy.infer(images, "reach", raw_proprio(policy.manifest))


def test_run_network_refuses_another_number_of_views(policy):
    x = batch(policy.manifest, 2)
    with pytest.raises(InputError, match=r"image has 1 views .* this model takes 2: \['front', 'wrist'\]"):
        policy.run_network(x[0][:, :1], *x[1:])
    with pytest.raises(InputError, match=r"missing \['wrist'\]"):
        policy.run_network({"front": x[0][:, 0]}, *x[1:])


@pytest.mark.parametrize("mode", ["shared", "merged"])
def test_iobinding_binds_every_view_and_equals_plain(multiview_dir, mode):
    with OnnxPolicy.from_dir(multiview_dir, providers=cpu("plain"), mode=mode) as plain, \
            OnnxPolicy.from_dir(multiview_dir, providers=cpu("iobinding"), mode=mode) as bound:
        assert bound.serving == "iobinding"
        assert {"image.front", "image.wrist"} <= set(bound._require_open().runner._buffers)
        m = plain.manifest
        x = batch(m, 3, seed=7)
        for i, name in enumerate([*MULTIVIEW_ADAPTERS, MULTIVIEW_ADAPTERS[0]]):  # switch back and forth
            plain.switch(name)
            bound.switch(name)
            args = (views(seed=i), "grasp the handle", raw_proprio(m, i))
            assert np.array_equal(plain.infer(*args).actions, bound.infer(*args).actions), name
            assert np.abs(plain.run_network(*x) - bound.run_network(*x)).max() <= 1e-6, name
        bound.switch(MULTIVIEW_ADAPTERS[0])
        a = bound.infer(views(seed=1), "grasp", raw_proprio(m)).actions
        bound.switch(MULTIVIEW_ADAPTERS[1])
        assert np.abs(bound.infer(views(seed=1), "grasp", raw_proprio(m)).actions - a).max() > 1e-4


def test_shared_and_merged_agree_on_two_views(policy, multiview_dir):
    with OnnxPolicy.from_dir(multiview_dir, providers=cpu(), mode="merged") as merged:
        for name in MULTIVIEW_ADAPTERS:
            policy.switch(name)
            merged.switch(name)
            args = (views(seed=5), "grasp the handle", raw_proprio(policy.manifest))
            assert np.abs(policy.infer(*args).actions - merged.infer(*args).actions).max() <= 1e-5
    policy.switch(MULTIVIEW_ADAPTERS[0])


def test_a_single_camera_model_also_takes_a_mapping(shared_policy):
    m = shared_policy.manifest
    assert m.cameras == (CameraInput("camera", "image", 32, 32),)
    one = shared_policy.infer(frame(), "open the drawer", raw_proprio(m))
    assert np.array_equal(shared_policy.infer({"camera": frame()}, "open the drawer", raw_proprio(m)).actions,
                          one.actions)
    with pytest.raises(InputError, match=r"missing \['camera'\], unknown \['front'\]"):
        shared_policy.infer({"front": frame()}, "open the drawer", raw_proprio(m))


def test_an_export_without_a_contract_carries_the_derived_one(model_dir):
    """The single-camera tiny model has no contract.yaml: its manifest carries default_contract(...)."""
    m = Manifest.load(model_dir)
    assert m.format_version == 2 and m.contract == default_contract(PROPRIO, BUNDLED_ACTIONS)
    two = derived_contract(CAMERAS, PROPRIO, BUNDLED_ACTIONS, [-1.0, -2.0, -1.0, 0.0], [1.0, 2.0, 1.0, 0.0])
    assert [(c.name, c.topic) for c in two.cameras] == [("front", "/front/image_raw"), ("wrist", "/wrist/image_raw")]
    assert two.reference_camera == "front" and two.actions[1].low == -2.0
    assert two.actions[3].low == -np.inf  # a pinned dimension (low == high) is left unbounded in the contract
    assert RobotContract.from_dict(two.to_dict()) == two


def test_version_1_manifests_read_as_one_camera_with_the_default_contract(clone):
    """Exports before version 2 (models/default is one) have no cameras or contract section."""
    def as_version_1(d):
        d["format_version"] = 1
        del d["cameras"], d["contract"]

    before = OnnxPolicy.from_dir(clone, providers=cpu(), warmup=False)
    expected = before.infer(frame(), "open the drawer", raw_proprio(before.manifest)).actions
    before.close()
    edit_manifest(clone, as_version_1)
    m = Manifest.load(clone)
    assert m.format_version == 1 and m.cameras == (CameraInput("camera", "image", 32, 32),)
    assert m.contract == default_contract(PROPRIO, BUNDLED_ACTIONS)
    assert m.to_dict() == json.loads((clone / "manifest.json").read_text())  # written back as version 1
    with OnnxPolicy.from_dir(clone, providers=cpu(), warmup=False) as p:
        assert np.array_equal(p.infer(frame(), "open the drawer", raw_proprio(m)).actions, expected)


def test_the_bundled_version_1_model_reads_unchanged():
    from runtime_helpers import BUNDLED

    m = Manifest.load(BUNDLED)
    assert m.format_version == 1 and m.cameras == (CameraInput("camera", "image", 96, 96),)
    assert m.contract == default_contract(m.proprio_names, m.actions.names)
    assert m.to_dict() == json.loads((BUNDLED / "manifest.json").read_text())


def _without_wrist_in_contract(d):
    del d["contract"]["cameras"]["wrist"]


def _rename_wrist(d, graph_input="image.side"):
    """Rename camera 'wrist' to 'side' everywhere in the manifest (the graph still has image.wrist)."""
    d["cameras"][1].update(name="side", input=graph_input)
    d["inputs"][1]["name"] = graph_input
    d["contract"]["cameras"]["side"] = d["contract"]["cameras"].pop("wrist")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_without_wrist_in_contract, r"the manifest's contract does not describe its model .*cameras: the contract "
                                     r"has \['front'\] \(1\), the model \['front', 'wrist'\] \(2\)"),
        (lambda d: d["contract"]["actions"].pop(), r"actions: the contract has \['dx', 'dy', 'dz'\] \(3\), the model "
                                                   r"\['dx', 'dy', 'dz', 'gripper'\] \(4\)"),
        (lambda d: d["inputs"].pop(1), r"for cameras \['front', 'wrist'\] the runtime expects \['image.front', "
                                       r"'image.wrist', .*\(missing \['image.wrist'\]\)"),
        (lambda d: d["cameras"][1].__setitem__("input", "image.side"),
         r"camera 'wrist' has graph input 'image.side'; for 2 camera\(s\) its input is 'image.wrist'"),
        (lambda d: d["cameras"][0].__setitem__("height", 64),
         r"camera 'front' is 64x32; the image section .* says 32x32"),
        (lambda d: d["cameras"].append(dict(d["cameras"][0])), r"cameras has a name twice"),
        (lambda d: d.pop("cameras"), r"manifest lacks 'cameras'"),
        (lambda d: d["contract"].__setitem__("camras", {}), r"contract: unknown key 'camras'; did you mean 'cameras'"),
        (lambda d: d["shared"]["adapter_inputs"][0].__setitem__("name", "image.wrist"),
         r"shared.adapter_inputs reuse policy input/output names \['image.wrist'\]"),
        (lambda d: d["inputs"][0].__setitem__("shape", ["batch", 3, 16, 32]), r"image.front shape \['batch', 3, 16, 32\] does not match .* expected \[batch, 3, 32, 32\]"),
    ],
)
def test_inconsistent_camera_sections_are_refused_naming_both_sides(multiview_clone, change, message):
    edit_manifest(multiview_clone, change)
    with pytest.raises(ManifestError, match=message):
        Manifest.load(multiview_clone)


def test_a_camera_input_missing_from_the_graph_is_refused(multiview_clone):
    """A manifest that agrees with itself but not with the graph: the session check names the inputs."""
    edit_manifest(multiview_clone, _rename_wrist)
    assert Manifest.load(multiview_clone).camera_names == ("front", "side")
    with pytest.raises(ManifestError, match=r"graph lacks \['image.side'\] .* has \['image.wrist'\] the manifest "
                                            r"does not declare"):
        OnnxPolicy.from_dir(multiview_clone, providers=cpu(), warmup=False)
