"""docs/architecture.png draws imports the code has: a refactor that moves one fails here until the
picture is redrawn (`python -m tools.draw_architecture`)."""

from tools.draw_architecture import imported_modules, missing_imports, picture


def test_every_drawn_import_exists_in_the_code() -> None:
    assert missing_imports(picture()) == []


def test_the_check_sees_an_import_that_is_not_there() -> None:
    assert "serving.concepts.store" in imported_modules("serving.concepts.resolver")
    assert "training.loop" not in imported_modules("serving.concepts.resolver")
