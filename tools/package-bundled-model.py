#!/usr/bin/env python3
"""Packages a model trained by `gimp-diffusion-cli train` as the plug-in's bundled model.

    tools/package-bundled-model.py TRAINED_FOLDER [DEST] [--guidance W [--guidance-below T]]
    (DEST: models/checkpoints/gimp-patterns)

Copies config.json, diffusion_pytorch_model.safetensors (the EMA weights) and, for
class-conditional models, classes.json, and rewrites
scheduler_config.json for diffusers' DPMSolverMultistepScheduler, keeping the noise schedule and
prediction type the model was trained with. The trainer writes a DDPMScheduler config (what it
trained with), whose default sampling is the full 1000-step chain: far too slow for a canvas on a
CPU. A DPMSolverMultistepScheduler config makes the plug-in's "default" sampler dpmpp_2m with 20
steps, and diffusers users get the same from DPMSolverMultistepScheduler.from_pretrained.
With --guidance, guidance.json records Generate's default guidance against the mean class
(`{"generate": {"scale": W, "below_timestep": T}}`), chosen from measurements such as the model
card's; without it any guidance.json in DEST is removed.
The model card (README.md in DEST) is written by hand and left alone.
"""
import argparse
import json
import os
import shutil
import sys


def main():
    parser = argparse.ArgumentParser(description="Packages a trained model as the bundled model.")
    parser.add_argument("src", metavar="TRAINED_FOLDER")
    parser.add_argument("dest", metavar="DEST", nargs="?", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "models", "checkpoints", "gimp-patterns"))
    parser.add_argument("--guidance", type=float, help="Generate's default guidance scale (1 to 20)")
    parser.add_argument("--guidance-below", type=int, help="guide only the steps below this timestep")
    args = parser.parse_args()
    src, dest = args.src, args.dest
    if args.guidance is not None and not 1 <= args.guidance <= 20:
        sys.exit("--guidance must be from 1 to 20")
    if args.guidance_below is not None and args.guidance is None:
        sys.exit("--guidance-below needs --guidance")
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"):
        if not os.path.isfile(os.path.join(src, name)):
            sys.exit("%s: no %s (not a folder written by gimp-diffusion-cli train)" % (src, name))
    with open(os.path.join(src, "scheduler_config.json")) as f:
        trained = json.load(f)
    if trained.get("_class_name") != "DDPMScheduler":
        sys.exit("%s: scheduler_config.json is %s, expected the trainer's DDPMScheduler"
                 % (src, trained.get("_class_name")))

    # The guidance is checked before anything is written, so a bad option leaves DEST as it was.
    generate = None
    if args.guidance is not None and args.guidance != 1:
        if not os.path.isfile(os.path.join(src, "classes.json")):
            sys.exit("%s: --guidance needs a class-conditional model (train --classes)" % src)
        generate = {"scale": args.guidance}
        if args.guidance_below is not None:
            if not 1 <= args.guidance_below <= trained["num_train_timesteps"]:
                sys.exit("--guidance-below must be a timestep from 1 to %d" % trained["num_train_timesteps"])
            generate["below_timestep"] = args.guidance_below

    scheduler = {
        "_class_name": "DPMSolverMultistepScheduler",
        "_diffusers_version": trained.get("_diffusers_version", "0.31.0"),
        # The training schedule, unchanged.
        "num_train_timesteps": trained["num_train_timesteps"],
        "beta_schedule": trained["beta_schedule"],
        "beta_start": trained["beta_start"],
        "beta_end": trained["beta_end"],
        "trained_betas": trained.get("trained_betas"),
        "prediction_type": trained["prediction_type"],
        # DPM-Solver++(2M), diffusers' defaults for the class, which our dpmpp_2m implements.
        "algorithm_type": "dpmsolver++",
        "solver_order": 2,
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "final_sigmas_type": "zero",
        "use_karras_sigmas": False,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "variance_type": None,
        # "trailing" makes the first step the last training timestep, where the sample is pure
        # noise, as generation assumes (Lin et al. 2024); "leading" would start 50 steps short.
        "timestep_spacing": "trailing",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }
    os.makedirs(dest, exist_ok=True)
    names = ["config.json", "diffusion_pytorch_model.safetensors"]
    # Class-conditional models (train --classes) name their classes in classes.json.
    if os.path.isfile(os.path.join(src, "classes.json")):
        names.append("classes.json")
    elif os.path.exists(os.path.join(dest, "classes.json")):
        os.remove(os.path.join(dest, "classes.json"))
    for name in names:
        shutil.copyfile(os.path.join(src, name), os.path.join(dest, name + ".tmp"))
        os.replace(os.path.join(dest, name + ".tmp"), os.path.join(dest, name))
    with open(os.path.join(dest, "scheduler_config.json.tmp"), "w") as f:
        json.dump(scheduler, f, indent=2)
        f.write("\n")
    os.replace(os.path.join(dest, "scheduler_config.json.tmp"), os.path.join(dest, "scheduler_config.json"))
    guidance_path = os.path.join(dest, "guidance.json")
    if generate:
        with open(guidance_path + ".tmp", "w") as f:
            json.dump({"generate": generate}, f, indent=2)
            f.write("\n")
        os.replace(guidance_path + ".tmp", guidance_path)
    elif os.path.exists(guidance_path):
        os.remove(guidance_path)
    print("packaged %s -> %s" % (src, os.path.normpath(dest)))


if __name__ == "__main__":
    main()
