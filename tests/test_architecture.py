"""The house drawn from its imports: every module imports only modules on its own layer or below, the imports
draw no circle, and no module reaches through another to a third (config.data: import data). Read from the
source with ast, every import statement (a lazy one inside a function too), nothing imported."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the root's modules from the bottom up: a module may import one on its own layer or a lower one; the
# studies (studies/*.py) are the top layer
LAYERS = [("codepath", "constants"), ("data",), ("models",), ("src",), ("analysis", "sleep_analysis", "baselines", "icarl", "sleep_search"),
          ("methods",), ("config",), ("runner",), ("visualize", "results"), ("mnist_exp",)]
LAYER = {m: i for i, names in enumerate(LAYERS) for m in names}


def sources(*folders):
    """{module: its source} of the root's *.py and of each folder's *.py (named "FOLDER/NAME")."""
    paths = glob.glob(os.path.join(ROOT, "*.py")) + [p for f in folders for p in glob.glob(os.path.join(ROOT, f, "*.py"))]
    return {os.path.relpath(p, ROOT)[:-3]: open(p).read() for p in sorted(paths)}


def imported(name, source, modules):
    """{module of the project: the line of its first import} in a module's source, wherever the import is. A
    name is a module beside it (a study's `import sweep`: studies/sweep) or else a root module."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module.split(".")[0]]
        else:
            continue
        for n in names:
            beside = os.path.join(os.path.dirname(name), n)
            target = beside if beside in modules else n if n in modules else None
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


def problems(modules):
    """One line for each module without a layer, each import of a module on a higher layer and each circle."""
    graph = {m: imported(m, s, modules) for m, s in modules.items()}
    layer = lambda m: len(LAYERS) if m.startswith("studies/") else LAYER.get(m)
    out = [f"{m}.py has no layer (add it to LAYERS)" for m in graph if layer(m) is None]
    out += [f"{m}.py line {line} imports {t}, a module on a higher layer" for m, targets in graph.items()
            for t, line in targets.items() if None not in (layer(m), layer(t)) and layer(t) > layer(m)]
    done, path = set(), []

    def visit(m):   # depth first: a module met again on the path is a circle
        if m in path:
            out.append("circle: " + " -> ".join(path[path.index(m):] + [m]))
        elif m not in done:
            path.append(m)
            for t in sorted(graph[m]):
                visit(t)
            done.add(path.pop())

    for m in sorted(graph):
        visit(m)
    return out


def reach_throughs(modules, users):
    """One line for each use of a module's own import from outside it (config.data.load, from config import
    METHODS where config imports it from methods): the user should import it where it lives."""
    bound = {}   # the names each module's imports bind
    for m, source in modules.items():
        tree = ast.parse(source)
        bound[os.path.basename(m)] = {a.asname or a.name.split(".")[0] for node in ast.walk(tree)
                                      if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    out = []
    for user, source in users.items():
        tree = ast.parse(source)
        mine = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in mine \
                    and node.attr in bound.get(node.value.id, ()):
                out.append((user, node.lineno, f"{node.value.id}.{node.attr}"))
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module in bound:
                out += [(user, node.lineno, f"from {node.module} import {a.name}") for a in node.names
                        if a.name in bound[node.module]]
    return [f"{user}.py line {line}: {use}" for user, line, use in sorted(out)]


def test_no_module_imports_one_on_a_higher_layer_and_no_circle():
    modules = sources("studies")
    assert {"config", "src", "studies/sweep"} <= set(modules) and len(modules) > 20   # it reads the tree
    assert problems(modules) == []
    # no study is named as a root module: which one an import means would depend on the import path
    assert not {os.path.basename(m) for m in modules if m.startswith("studies/")} & set(LAYER)


def test_a_planted_upward_import_or_circle_fails():
    modules = sources("studies")
    # the circle this test was written for: src reading config's presets inside a function
    planted = dict(modules, src=modules["src"] + "\n\ndef preset(name):\n    import config\n    return config.PRESETS[name]\n")
    line = len(planted["src"].splitlines()) - 1
    assert problems(planted) == [f"src.py line {line} imports config, a module on a higher layer",
                                 "circle: config -> methods -> src -> config"]
    # two modules of one layer that import each other: no import runs up, the circle alone fails
    same = dict(modules, icarl=modules["icarl"] + "\nfrom analysis import capacity\n", analysis="import icarl\n")
    assert problems(same) == ["circle: analysis -> icarl -> analysis"]
    # a study importing another that imports it; a new module without a layer
    studies = dict(modules, **{"studies/sweep": modules["studies/sweep"] + "\nimport bridge\n", "newmod": "import data\n"})
    assert problems(studies) == ["newmod.py has no layer (add it to LAYERS)", "circle: studies/bridge -> studies/sweep -> studies/bridge"]


def test_no_module_reaches_through_another():
    modules = sources("studies")
    assert reach_throughs(modules, sources("studies", "tests", "docs")) == []
    planted = {"studies/mine": "import config\nimport src\n\nconfig.data.load('mnist')\nx = src.torch.zeros(1)\n"
                               "from config import METHODS\nfrom config import resolve\n"}
    assert reach_throughs(modules, planted) == ["studies/mine.py line 4: config.data", "studies/mine.py line 5: src.torch",
                                                "studies/mine.py line 6: from config import METHODS"]


def test_every_study_imports_project_before_the_root_s_modules():
    # what puts the root on the import path when a study runs as `python studies/NAME.py` (studies/project.py)
    modules = sources("studies")
    late = []
    for name, source in modules.items():
        if name.startswith("studies/") and name != "studies/project":
            found = imported(name, source, modules)
            root = [line for m, line in found.items() if "/" not in m]
            if root and found.get("studies/project", float("inf")) > min(root):
                late.append(f"{name}.py imports a root module on line {min(root)}, before project")
    assert late == []
