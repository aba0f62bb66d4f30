"""Audio classification (keyword spotting, sound events): folders of `<label>/*.wav` or a CSV
of path,label; transformers audio classifiers (wav2vec2/HuBERT style, with a feature
extractor) and plain PyTorch modules over log-mel features (`data/logmel.py`). Clips are
decoded, mixed to mono, resampled to the model's rate and cut or padded to the profile's
`clip_seconds` (`data/waveform.py`: the same numpy code in training, the export check,
`predict` and `serve`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.deploy.bundle import Bundle
from edgetune.errors import InputError
from edgetune.measure.bench import EvalSet, Subject
from edgetune.measure.front_end import FrontEnd
from edgetune.modality.base import (
    BenchData,
    CheckpointInputs,
    Modality,
    Prepared,
    bundle_split,
    holdout,
)
from edgetune.profiles import Profile

TASK = "audio-classification"
CHECK_ROWS = 64
LATENCY_CLIPS = 8  # distinct validation clips repeated into the timed batch
EVAL_BATCH = 32
LOADTEST_CLIPS = 64


class AudioModality(Modality):
    name = "audio"
    tasks = (TASK,)

    @classmethod
    def claims_model(cls, model_source: str) -> bool:
        from edgetune.train.sources import is_audio_model

        return is_audio_model(model_source)

    @classmethod
    def claims_data(cls, data: str | None) -> bool:
        from edgetune.data.audio import looks_like_audio

        return looks_like_audio(data)

    def check_source(self, model_source: str) -> None:
        from edgetune.train.sources import check_model_source

        check_model_source(model_source, images=True)  # a preprocessor_config.json beside it

    def check_trainable(self, model_source: str) -> str:
        from edgetune.train.sources import check_trainable

        return check_trainable(model_source, head="audio")

    def check_profile(self, model_source: str, profile: Profile) -> None:
        from transformers import AutoFeatureExtractor

        from edgetune.factory import is_factory

        if is_factory(model_source):  # a plain module: its factory declares the front end
            from edgetune.factory import resolve_factory
            from edgetune.train.plain import audio_processor_of

            rate = audio_processor_of(resolve_factory(model_source)).sampling_rate
        else:
            extractor = AutoFeatureExtractor.from_pretrained(model_source, trust_remote_code=False)
            rate = extractor.sampling_rate
        _check_rate(rate, profile, model_source)

    def load_data(self, config, seed: int, model_source: str):
        from edgetune.data.audio import load_audio_dataset

        columns = (getattr(config, "image_column", None), config.label_column)
        return self.adopt(load_audio_dataset(config.data, *columns, **holdout(config, seed)))

    def task(self, dataset) -> str:
        return TASK

    def load_pretrained(self, model_source: str, label_names: list[str]):
        from edgetune.train.tasks import AudioTask

        return AudioTask.load(model_source, label_names)

    def train_task(self, preprocessor, model, config):
        from edgetune.data.front_end import audio_processor
        from edgetune.data.waveform import clip_samples
        from edgetune.train.tasks import AudioTask

        processor = audio_processor(preprocessor)
        return AudioTask(processor, clip_samples(processor, config.clip_seconds), config.seed)

    def prepare(self, model, preprocessor, profile: Profile, max_length: int) -> Prepared:
        """The processor at the model's rate; the input size is the clip length in samples."""
        from edgetune.data.front_end import audio_processor
        from edgetune.data.waveform import clip_samples

        processor = audio_processor(preprocessor)
        _check_rate(processor.sampling_rate, profile, "the model")
        return Prepared(processor, clip_samples(processor, profile.clip_seconds), 1)

    @staticmethod
    def _batches(processor, paths: list[str], samples: int, size: int = EVAL_BATCH) -> list[dict]:
        from edgetune.data.audio import read_clips

        return [
            processor.batch(read_clips(paths[i : i + size]), samples)
            for i in range(0, len(paths), size)
        ]

    def calibration(self, dataset, prepared: Prepared, samples: int, seed: int) -> list[dict]:
        paths = list(dataset.train["audio"])
        picked = [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))[:samples]]
        return self._batches(prepared.processor, picked, prepared.input_size, 8)

    def evaluation(self, dataset, prepared: Prepared) -> EvalSet:
        split = dataset.validation
        batches = self._batches(prepared.processor, list(split["audio"]), prepared.input_size)
        return EvalSet(None, [], np.asarray(split["label"]), prepared.input_size, batches)

    def check_batches(self, dataset, prepared: Prepared) -> list[dict]:
        paths = list(dataset.validation["audio"])[:CHECK_ROWS]
        return self._batches(prepared.processor, paths, prepared.input_size)

    def latency_feed(self, dataset, prepared: Prepared, profile: Profile) -> dict | None:
        return _fixed_batch(
            prepared.processor,
            list(dataset.validation["audio"])[:LATENCY_CLIPS],
            prepared.input_size,
            profile.batch_size,
        )

    def loadtest_inputs(self, dataset) -> list | None:
        """Validation clips, each sent as a request's whole body (the file's bytes)."""
        return [Path(p).read_bytes() for p in list(dataset.validation["audio"])[:LOADTEST_CLIPS]]

    def front_end(self, dataset, prepared: Prepared, profile: Profile) -> FrontEnd | None:
        paths = list(dataset.validation["audio"])[:LATENCY_CLIPS]
        files = [Path(p).read_bytes() for p in paths]
        return _front_end(prepared.processor, files, prepared.input_size, profile.batch_size)

    def checkpoint_inputs(
        self, checkpoint: Path, data: str | None, prepared: Prepared, calibration_samples: int
    ) -> CheckpointInputs:
        """The data's validation clips, or with no data stand-ins (silence and noise)."""
        if data is not None:
            from edgetune.data.audio import load_audio_dataset

            paths = list(load_audio_dataset(data).validation["audio"])[:CHECK_ROWS]
            batches = self._batches(prepared.processor, paths, prepared.input_size)
        else:
            batches = [_stand_ins(prepared.processor, prepared.input_size)]
        calibration = batches if calibration_samples else []
        return CheckpointInputs(batches, TASK, calibration)

    def bench_subject(self, name: str, bundle: Bundle, data: BenchData, profile: Profile):
        """Timed on one batch of the data's clips (or silence and noise) as the bundle's own
        processor makes them."""
        from edgetune.data.front_end import load_audio_processor
        from edgetune.data.waveform import sample_clips

        processor = load_audio_processor(bundle.path)
        if data.data is None:
            stand_in = _stand_ins(processor, bundle.max_length)[processor.input_name]
            rows = [stand_in[i % len(stand_in)] for i in range(profile.batch_size)]
            feed = {processor.input_name: np.stack(rows)}
            files = sample_clips()
        else:
            paths = list(self._split(bundle, data)["audio"])[:LATENCY_CLIPS]
            feed = _fixed_batch(processor, paths, bundle.max_length, profile.batch_size)
            files = [Path(p).read_bytes() for p in paths]
        front_end = _front_end(processor, files, bundle.max_length, profile.batch_size)
        return Subject(name, bundle.model_path, None, feed, front_end=front_end)

    def bench_evaluation(self, bundle: Bundle, subject: Subject, data: BenchData) -> EvalSet:
        from edgetune.data.front_end import load_audio_processor

        split = self._split(bundle, data)
        processor = load_audio_processor(bundle.path)
        batches = self._batches(processor, list(split["audio"]), bundle.max_length)
        return EvalSet(None, [], np.asarray(split["label"]), bundle.max_length, batches)

    @staticmethod
    def _split(bundle: Bundle, data: BenchData):
        from edgetune.data.audio import load_audio_dataset

        return bundle_split(load_audio_dataset, bundle, data)

    def bundle_calibration(self, bundle: Bundle, data: str, samples: int) -> list[dict]:
        from edgetune.data.audio import load_audio_dataset
        from edgetune.data.front_end import load_audio_processor

        paths = list(load_audio_dataset(data).train["audio"])[:samples]
        return self._batches(load_audio_processor(bundle.path), paths, bundle.max_length, 8)

    def predictor(self, bundle: Bundle, threads: int = 0):
        from edgetune.deploy.runtime import AudioPredictor

        return AudioPredictor(bundle, threads)


def _check_rate(rate: int, profile: Profile, what: str) -> None:
    """A wav2vec2-style model hears at the rate it was trained at: a profile asking another
    (a device's microphone rate) is refused; clips at other rates are resampled to it."""
    if profile.sample_rate is not None and profile.sample_rate != rate:
        raise InputError(
            f"profile '{profile.name}' asks for {profile.sample_rate} Hz audio but {what} "
            f"takes {rate} Hz (it was trained at that rate); set "
            f"sample_rate = {rate} or leave it out (clips are resampled to it)"
        )


def _front_end(processor, files: list[bytes], samples: int, batch_size: int) -> FrontEnd:
    """What `serve` does with a batch of clip files before the model: decode, mix to mono,
    resample, cut or pad, and (a log-mel model) the features."""
    from edgetune.data.waveform import decode

    picked = [files[i % len(files)] for i in range(batch_size)]
    features = "log-mel features" if processor.input_name == "input_features" else "normalize"
    what = f"the audio front end (decode, resample, {features}; numpy)"
    return FrontEnd(what, batch_size, lambda: processor.batch([decode(f) for f in picked], samples))


def _fixed_batch(processor, paths: list[str], samples: int, batch_size: int) -> dict:
    from edgetune.data.audio import read_clips

    clips = read_clips(paths)
    return processor.batch([clips[i % len(clips)] for i in range(batch_size)], samples)


def _stand_ins(processor, samples: int) -> dict:
    noise = np.random.default_rng(0).normal(0, 0.1, samples).astype(np.float32)
    silence = np.zeros(samples, dtype=np.float32)
    rate = processor.sampling_rate
    return processor.batch([(silence, rate), (noise, rate)], samples)
