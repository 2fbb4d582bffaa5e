(function () {
  "use strict";
  function sortValue(cell) {
    var value = cell.getAttribute("data-sort");
    return value === null ? cell.textContent.trim() : value;
  }
  function compare(a, b, numeric) {
    if (numeric) {
      return parseFloat(a) - parseFloat(b);
    }
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }
  function sortBy(table, index, header) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var numeric = header.getAttribute("data-type") === "number";
    var headers = table.tHead.rows[0].cells;
    for (var h = 0; h < headers.length; h++) {
      headers[h].removeAttribute("aria-sort");
    }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (first, second) {
      var a = sortValue(first.cells[index]);
      var b = sortValue(second.cells[index]);
      var aMissing = a === "" || (numeric && isNaN(parseFloat(a)));
      var bMissing = b === "" || (numeric && isNaN(parseFloat(b)));
      if (aMissing || bMissing) {
        return aMissing === bMissing ? 0 : (aMissing ? 1 : -1);
      }
      var order = compare(a, b, numeric);
      return ascending ? order : -order;
    });
    for (var r = 0; r < rows.length; r++) {
      body.appendChild(rows[r]);
    }
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    if (!table.tHead || !table.tBodies.length) {
      return;
    }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.tabIndex = 0;
      header.addEventListener("click", function () { sortBy(table, index, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, index, header);
        }
      });
    });
  });
  // Chart legends: a click hides or shows its line (identical curves can be told apart).
  var legendItems = document.querySelectorAll("figure.chart button.legend-item");
  Array.prototype.forEach.call(legendItems, function (button) {
    button.addEventListener("click", function () {
      var shown = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", shown ? "true" : "false");
      var figure = button.closest("figure");
      var series = figure.querySelectorAll('g.series[data-series="' + button.getAttribute("data-series") + '"]');
      Array.prototype.forEach.call(series, function (group) {
        group.style.display = shown ? "" : "none";
      });
    });
  });
})();
