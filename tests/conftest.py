import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before any test module imports TensorFlow: `common` chooses its CPU allocator.
import common  # noqa: E402,F401

# Seconds a test file takes in `make test` (pytest --durations on a 2-core
# AMD EPYC without AVX-512, setup included; 21 min 12 s in all), for the
# files that take more than a few.
#
# `make test` hands whole files to its two workers (--dist loadfile). By
# default xdist hands them out by number of tests, most first, so the
# end-to-end files of one or two long tests came last and one worker ran the
# six-minute detection file alone at the end while the other idled. Heaviest
# first instead: the short files then fill the gaps and both workers finish
# within seconds of each other. Files not listed take seconds and go last,
# in their usual order. Refresh the numbers when a file's time changes a lot.
FILE_SECONDS = {
    "tests/test_segmentation_end_to_end.py": 395,
    "tests/test_super_resolution_real_data.py": 340,
    "tests/test_translation_real_data.py": 315,
    "tests/test_segmentation_real_data.py": 255,
    "tests/test_detection_end_to_end.py": 225,
    "tests/test_super_resolution_end_to_end.py": 135,
    "tests/test_sentiment_train.py": 130,
    "tests/test_precision_modes.py": 85,
    "tests/test_detection_real_data.py": 75,
    "tests/test_translation_end_to_end.py": 70,
    "tests/test_serving_limits.py": 60,
    "tests/test_serving_bundle.py": 60,
    "tests/test_tts_end_to_end.py": 50,
    "tests/test_sentiment_model.py": 35,
    "tests/test_export.py": 35,
    "tests/test_qat.py": 30,
    "tests/test_efficiency.py": 25,
    "tests/test_tts_real_data.py": 20,
    "tests/test_tts_model.py": 15,
    "tests/test_sentiment_real_data.py": 15,
    "tests/test_mobile_sentiment.py": 15,
    "tests/test_detection_data.py": 15,
    "tests/test_cpu_allocator.py": 15,
    "tests/test_suite.py": 10,
    "tests/test_mobile_super_resolution.py": 10,
}


def pytest_configure(config):
    # Keep the collection order below (xdist would re-sort files by their
    # number of tests).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(session, config, items):
    """Heaviest files first; a file's tests stay together, in their order."""
    def file_of(item):
        return item.nodeid.split("::")[0]

    first_index = {}
    for index, item in enumerate(items):
        first_index.setdefault(file_of(item), index)
    items.sort(key=lambda item: (-FILE_SECONDS.get(file_of(item), 0),
                                 first_index[file_of(item)]))
