"""Flow-GRPO: group-relative policy optimisation of image and video generators (SD3, Wan through diffusers).

One stage in one package. The rollout's maths (:mod:`.sde`, :mod:`.grpo`), the generator families (:mod:`.families`),
their text encoders and media decoding (:mod:`.text`, :mod:`.media`), one rank's policy (:mod:`.policy`) and its Ray
worker (:mod:`.worker`), the loop (:mod:`.trainer`), prompt rows and rewards on media (:mod:`.prompts`,
:mod:`.rewards`, :mod:`.scorers`), the configuration (:mod:`.config`, :mod:`.validate`, :mod:`.upstream_keys`), the
entry point (:mod:`.main`), the merger (:mod:`.merge`) and tiny local pipelines (:mod:`.tiny`). It builds on the
generic rooms (controller, algos, rewards, the trainer's run/checkpoint/metrics); nothing outside imports it.
"""

from importlib.util import find_spec

# diffusers (the generators) comes with the optional extra "flow": say so before anything needs it.
if find_spec("diffusers") is None:
    raise ModuleNotFoundError("Flow-GRPO needs diffusers, an optional dependency: pip install 'longrl[flow]'",
                              name="diffusers")
