"""Quality measures that a person's eye agrees with: colour fidelity, realism, temporal stability.

Each measure is a pure function of (input image, output image, face region), so it judges any model, any
baseline and any user's own footage (`python -m benchmarks.quality compare IN OUT`) with the same code.
See `../shared/docs/AGING.md` for what they are meant to see and the reference numbers.
"""
