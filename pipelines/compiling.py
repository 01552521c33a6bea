"""Compile a pipeline function to KFP YAML (shared by every pipeline module)."""

from pathlib import Path

from kfp import compiler


def compile_pipeline(pipeline_func, out_dir: Path, filename: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename
    compiler.Compiler().compile(pipeline_func, str(path))
    return path
