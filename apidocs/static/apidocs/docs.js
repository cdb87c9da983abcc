// Renders the OpenAPI description (openapi.json) as a page for humans:
// operations by tag, their parameters, bodies and responses, with schemas
// shown as JSON. Only DOM text nodes are written (no HTML from the document),
// and nothing is loaded from another site.
(function () {
  "use strict";
  var main = document.getElementById("docs");
  var spec;

  function el(name, attrs, children) {
    var node = document.createElement(name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  // Inline Markdown of the description: `code` and **bold** only.
  function inline(text) {
    var span = el("span");
    text.split(/(`[^`]+`|\*\*[^*]+\*\*)/).forEach(function (part) {
      if (/^`.*`$/.test(part)) span.appendChild(el("code", {}, [part.slice(1, -1)]));
      else if (/^\*\*.*\*\*$/.test(part)) span.appendChild(el("strong", {}, [part.slice(2, -2)]));
      else if (part) span.appendChild(document.createTextNode(part));
    });
    return span;
  }

  // Block Markdown: paragraphs and pipe tables.
  function markdown(text) {
    var box = el("div");
    (text || "").split(/\n\s*\n/).forEach(function (block) {
      var lines = block.trim().split("\n");
      if (lines[0] && lines[0].charAt(0) === "|") {
        var table = el("table");
        lines.forEach(function (line, index) {
          if (index === 1) return; // the |---| row
          var cells = line.replace(/^\||\|$/g, "").split("|");
          table.appendChild(el("tr", {}, cells.map(function (cell) {
            return el(index === 0 ? "th" : "td", {}, [inline(cell.trim())]);
          })));
        });
        box.appendChild(table);
      } else if (block.trim()) {
        box.appendChild(el("p", {}, [inline(block.replace(/\n/g, " "))]));
      }
    });
    return box;
  }

  function resolve(node) {
    while (node && node.$ref) {
      node = node.$ref.replace(/^#\//, "").split("/").reduce(function (at, key) { return at[key]; }, spec);
    }
    return node;
  }

  function schemaBlock(schema) {
    return el("pre", {}, [JSON.stringify(schema, null, 2)]);
  }

  function content(body) {
    var box = el("div");
    Object.keys(body.content || {}).forEach(function (type) {
      box.appendChild(el("p", {}, [el("code", {}, [type])]));
      var schema = body.content[type].schema;
      if (schema) box.appendChild(schemaBlock(resolve(schema)));
    });
    return box;
  }

  function renderOperation(path, method, op) {
    var inner = el("div", {}, [markdown(op.description || "")]);
    if (op.security && op.security.length === 0) inner.appendChild(el("p", {class: "muted"}, ["No API key needed."]));
    if (op.parameters) {
      inner.appendChild(el("h4", {}, ["Parameters"]));
      inner.appendChild(el("table", {}, op.parameters.map(function (p) {
        p = resolve(p);
        return el("tr", {}, [el("td", {}, [el("code", {}, [p.name])]), el("td", {}, [p.in + (p.required ? ", required" : "")]),
                             el("td", {}, [inline(p.description || "")])]);
      })));
    }
    if (op.requestBody) {
      inner.appendChild(el("h4", {}, ["Request body"]));
      inner.appendChild(content(resolve(op.requestBody)));
    }
    inner.appendChild(el("h4", {}, ["Responses"]));
    Object.keys(op.responses).forEach(function (status) {
      var response = resolve(op.responses[status]);
      var headers = Object.keys(response.headers || {});
      inner.appendChild(el("p", {}, [el("strong", {}, [status]), " ", inline(response.description || ""),
        headers.length ? el("span", {class: "muted"}, [" Headers: " + headers.join(", ")]) : ""]));
      inner.appendChild(content(response));
    });
    var summary = el("summary", {}, [el("span", {class: "method " + method}, [method]), " ",
                                     el("span", {class: "path"}, [path]), " ", el("span", {class: "muted"}, [op.summary || ""])]);
    return el("details", {class: "op", id: op.operationId}, [summary, inner]);
  }

  function render() {
    main.appendChild(el("p", {class: "muted"}, ["Version " + spec.info.version + ", OpenAPI " + spec.openapi + "."]));
    main.appendChild(markdown(spec.info.description));
    (spec.tags || []).forEach(function (tag) {
      var section = el("section", {id: "tag-" + tag.name}, [el("h2", {}, [tag.name]), el("p", {}, [tag.description || ""])]);
      Object.keys(spec.paths).forEach(function (path) {
        Object.keys(spec.paths[path]).forEach(function (method) {
          var op = spec.paths[path][method];
          if ((op.tags || [])[0] === tag.name) section.appendChild(renderOperation(path, method, op));
        });
      });
      main.appendChild(section);
    });
  }

  fetch(main.dataset.spec, {headers: {Accept: "application/json"}})
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(function (data) { spec = data; render(); })
    .catch(function (error) {
      main.appendChild(el("p", {}, ["Could not load the description: " + error.message]));
    });
})();
