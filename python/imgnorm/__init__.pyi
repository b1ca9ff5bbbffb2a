# Type stubs of the imgnorm package (python/imgnorm/__init__.py over the _core extension).
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, bytes, os.PathLike]
Progress = Union[None, bool, Callable[[int, int], None]]
Size = Union[int, str, Tuple[int, int]]
Alpha = Union[str, Tuple[int, int, int]]  # "drop" | "white" | "black" | "R,G,B" | (R, G, B)

class Error(Exception):
    code: str

class ArgumentError(Error, ValueError): ...
class FileError(Error, OSError): ...

class Stats:
    @staticmethod
    def load(path: PathLike) -> Stats: ...
    @staticmethod
    def from_json(text: str) -> Stats: ...
    def to_json(self) -> str: ...
    def save(self, path: PathLike, force: bool = ...) -> None: ...
    def torchvision(self): ...
    def keras(self) -> dict: ...
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    variance: npt.NDArray[np.float64]
    mean_unit: npt.NDArray[np.float64]
    std_unit: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    median: npt.NDArray[np.float64]
    mean_image_std: npt.NDArray[np.float64]
    percentiles: npt.NDArray[np.float64]
    covariance: npt.NDArray[np.float64]
    eigenvalues: npt.NDArray[np.float64]
    eigenvectors: npt.NDArray[np.float64]
    histogram: npt.NDArray[np.uint64]
    mean_image: Optional[npt.NDArray[np.float64]]
    pixel_covariance: Optional[npt.NDArray[np.float64]]
    patch: Optional[int]
    patch_count: Optional[int]
    patch_mean: Optional[npt.NDArray[np.float64]]
    patch_covariance: Optional[npt.NDArray[np.float64]]
    mean_ci: Optional[npt.NDArray[np.float64]]
    std_ci: Optional[npt.NDArray[np.float64]]
    images: int
    pixels: int
    channels: int
    channel_order: str
    ddof: int
    classes: list[str]
    class_images: list[int]
    files_found: int
    source: str
    tool_version: str
    recipe: dict
    shard: Tuple[int, int]
    covers: list[dict]
    sample: Optional[dict]
    skipped: list[Tuple[str, str]]
    ignored: list[Tuple[str, str]]

def stats(dataset: Optional[PathLike] = ..., *, list: Optional[PathLike] = ...,
          follow_links: bool = ..., size: Optional[Size] = ..., resize: str = ...,
          interp: str = ..., channels: str = ..., pad_value: int = ...,
          exact_decode: bool = ..., max_pixels: Optional[int] = ..., alpha: Alpha = ...,
          sample: Union[None, int, str] = ..., seed: int = ...,
          shard: Union[None, str, Tuple[int, int]] = ..., ddof: int = ..., mean_image: bool = ...,
          patch: Optional[int] = ..., pixel_covariance: bool = ..., threads: int = ...,
          max_memory: Union[None, int, str] = ...,
          allow_truncated: bool = ..., progress: Progress = ...) -> Stats: ...

def merge(parts: Iterable[Stats]) -> Stats: ...

def normalize(dataset: Union[None, PathLike, np.ndarray] = ..., *, list: Optional[PathLike] = ...,
              follow_links: bool = ..., stats: Union[None, Stats, PathLike] = ..., fit: bool = ...,
              save_stats: Optional[PathLike] = ..., ddof: Optional[int] = ..., mode: str = ...,
              range: Optional[Tuple[float, float]] = ..., unit: Optional[int] = ...,
              mean: Optional[Sequence[float]] = ..., std: Optional[Sequence[float]] = ...,
              mean_image: Optional[PathLike] = ..., divide_std: bool = ...,
              eps: Optional[float] = ..., patch: Optional[int] = ...,
              components: Optional[int] = ..., whiten: bool = ..., layout: str = ...,
              dtype: str = ...,
              channels: Optional[str] = ..., labels: bool = ..., size: Optional[Size] = ...,
              resize: Optional[str] = ..., interp: Optional[str] = ...,
              pad_value: Optional[int] = ..., exact_decode: Optional[bool] = ...,
              max_pixels: Optional[int] = ..., alpha: Optional[Alpha] = ...,
              out: Optional[PathLike] = ..., force: bool = ..., output_shards: bool = ...,
              threads: int = ..., max_memory: Union[None, int, str] = ...,
              allow_truncated: bool = ..., progress: Progress = ...
              ) -> Union[Tuple[np.ndarray, Optional[np.ndarray]], Tuple[int, list]]: ...

class Normalizer:
    def __init__(self, stats: Union[None, Stats, PathLike] = ..., mode: str = ..., *,
                 range: Optional[Tuple[float, float]] = ..., unit: Optional[int] = ...,
                 mean: Optional[Sequence[float]] = ..., std: Optional[Sequence[float]] = ...,
                 mean_image: Optional[PathLike] = ..., divide_std: bool = ...,
                 eps: Optional[float] = ..., patch: Optional[int] = ...,
                 components: Optional[int] = ..., whiten: bool = ..., layout: str = ...,
                 dtype: str = ...,
                 channels: Optional[str] = ..., matrix: Optional[Sequence[Sequence[float]]] = ...,
                 threads: int = ...) -> None: ...
    def __call__(self, images: np.ndarray) -> np.ndarray: ...
    formula: str
    mode: str
    layout: str
    dtype: str
    channels: str

def load(path: PathLike, *, size: Size = ..., resize: str = ..., interp: str = ...,
         channels: str = ..., pad_value: int = ..., exact_decode: bool = ...,
         max_pixels: Optional[int] = ..., alpha: Alpha = ...,
         allow_truncated: bool = ...) -> npt.NDArray[np.uint8]: ...

class Loader:
    def __init__(self, dataset: Optional[PathLike] = ..., *, list: Optional[PathLike] = ...,
                 follow_links: bool = ..., stats: Union[None, Stats, PathLike] = ...,
                 fit: bool = ..., save_stats: Optional[PathLike] = ...,
                 ddof: Optional[int] = ..., force: bool = ..., mode: str = ...,
                 range: Optional[Tuple[float, float]] = ..., unit: Optional[int] = ...,
                 mean: Optional[Sequence[float]] = ..., std: Optional[Sequence[float]] = ...,
                 mean_image: Optional[PathLike] = ..., divide_std: bool = ...,
                 eps: Optional[float] = ..., patch: Optional[int] = ...,
                 components: Optional[int] = ..., whiten: bool = ..., layout: str = ...,
                 dtype: str = ...,
                 channels: Optional[str] = ..., labels: bool = ..., size: Optional[Size] = ...,
                 resize: Optional[str] = ..., interp: Optional[str] = ...,
                 pad_value: Optional[int] = ..., exact_decode: Optional[bool] = ...,
                 max_pixels: Optional[int] = ..., alpha: Optional[Alpha] = ...,
                 batch_size: int = ..., shuffle: bool = ...,
                 seed: int = ..., drop_last: bool = ..., threads: int = ...,
                 max_memory: Union[None, int, str] = ..., prefetch: int = ...,
                 rank: Optional[int] = ..., world_size: Optional[int] = ...,
                 allow_truncated: bool = ..., warn: bool = ...) -> None: ...
    epoch: int
    skipped: list[Tuple[str, str]]
    files: list[str]
    def set_epoch(self, epoch: int) -> None: ...
    def __len__(self) -> int: ...
    def indices(self, epoch: Optional[int] = ...) -> list[int]: ...
    def batches(self, with_indices: bool = ...) -> Iterator[tuple]: ...
    def __iter__(self) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]: ...
