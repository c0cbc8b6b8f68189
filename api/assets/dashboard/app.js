// Recur's dashboard: a merchant's numbers, read from the same API endpoints a program calls.
// No number is computed here beyond formatting: every value on a page is a field of an API
// answer, shown with data-metric (its name) and data-raw (the value as the API gave it).

const T = {
  en: {
    signin: "Sign in", key: "API key", keyHint: "A key made by `recur keys create`.", merchant: "Merchant",
    badKey: "This key was not accepted", signout: "Sign out", lang: "中文",
    overview: "Overview", retention: "Retention", lifecycle: "Lifecycle", rfm: "RFM", clusters: "Clusters",
    audiences: "Audiences", campaigns: "Campaigns", customer: "Customer",
    customers: "Customers", orders: "Orders", revenue: "Revenue", repeatRate: "Repeat-purchase rate",
    users: "Users", repeatCustomers: "Repeat customers", asOf: "As of", repeatTrend: "Repeat-purchase rate by first-order month",
    week: "Week", month: "Month", firstTime: "First-time", recurring: "Recurring", cohort: "Cohort", offset: "Periods after",
    new: "New", returning: "Returning", resurrecting: "Resurrecting", dormant: "Dormant",
    segments: "Segments", valueClasses: "Value classes", segment: "Segment", share: "Share", meanOrders: "Mean orders",
    meanRecency: "Mean days since last order", cluster: "Cluster", description: "Description", meanSpend: "Mean spend",
    name: "Name", size: "Members", created: "Created", preview: "Members", rule: "Rule (JSON)", create: "Create audience",
    created_ok: "Stored: members come with the next `recur run`.", noAudiences: "No audience yet.",
    campaign: "Campaign", goal: "Goal", channel: "Channel", send: "Send", holdout: "Holdout", skip: "Skip",
    skipReasons: "Skip reasons", treated: "Treated", conversion: "Conversion", lift: "Lift", interval: "95% interval",
    noCampaigns: "No campaign yet.", lookup: "Look up", userId: "User id (any linked id)", profile: "Profile",
    recommendations: "Recommendations", recentOrders: "Recent orders", item: "Item", score: "Score", reason: "Reason",
    pAlive: "P(alive)", clv: "Expected value (12 months)", nextOrder: "Next order", lastOrder: "Last order",
    notFound: "No such customer.", loading: "Loading…", none: "—",
  },
  zh: {
    signin: "登录", key: "API 密钥", keyHint: "由 `recur keys create` 生成的密钥。", merchant: "商户",
    badKey: "密钥无效", signout: "退出", lang: "English",
    overview: "概览", retention: "留存", lifecycle: "生命周期", rfm: "RFM", clusters: "客群",
    audiences: "人群", campaigns: "营销活动", customer: "客户",
    customers: "客户数", orders: "订单数", revenue: "销售额", repeatRate: "复购率",
    users: "用户数", repeatCustomers: "复购客户", asOf: "数据截至", repeatTrend: "按首单月份的复购率",
    week: "周", month: "月", firstTime: "首次", recurring: "周期性", cohort: "同期群", offset: "之后周期",
    new: "新客", returning: "回访", resurrecting: "回流", dormant: "沉睡",
    segments: "分群", valueClasses: "价值分类", segment: "分群", share: "占比", meanOrders: "平均订单数",
    meanRecency: "距上次下单平均天数", cluster: "客群", description: "描述", meanSpend: "平均消费",
    name: "名称", size: "人数", created: "创建时间", preview: "成员", rule: "规则（JSON）", create: "创建人群",
    created_ok: "已保存：下次 `recur run` 后计算成员。", noAudiences: "还没有人群。",
    campaign: "活动", goal: "目标", channel: "渠道", send: "发送", holdout: "对照组", skip: "跳过",
    skipReasons: "跳过原因", treated: "触达组", conversion: "转化率", lift: "提升", interval: "95% 区间",
    noCampaigns: "还没有营销活动。", lookup: "查询", userId: "用户 ID（任一关联 ID）", profile: "客户档案",
    recommendations: "推荐", recentOrders: "最近订单", item: "商品", score: "得分", reason: "原因",
    pAlive: "活跃概率", clv: "预期价值（12 个月）", nextOrder: "预计下次下单", lastOrder: "上次下单",
    notFound: "没有这个客户。", loading: "加载中…", none: "—",
  },
};

const PAGES = ["overview", "retention", "lifecycle", "rfm", "clusters", "audiences", "campaigns", "customer"];
const state = {
  lang: localStorage.getItem("recur.lang") || (navigator.language.startsWith("zh") ? "zh" : "en"),
  key: sessionStorage.getItem("recur.key") || "",
  merchant: sessionStorage.getItem("recur.merchant") || "",
  summary: null,
  charts: [],
};
const t = (k) => T[state.lang][k] ?? k;
const locale = () => (state.lang === "zh" ? "zh-CN" : "en-US");
const $ = (selector) => document.querySelector(selector);
const main = () => $("#main");
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// ---- Formatting (locale and the merchant's time zone) ----
const fmt = {
  int: (v) => (v == null ? t("none") : new Intl.NumberFormat(locale()).format(v)),
  money: (v) => (v == null ? t("none") : new Intl.NumberFormat(locale(), { maximumFractionDigits: 2, minimumFractionDigits: 2 }).format(v)),
  pct: (v) => (v == null ? t("none") : new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 1 }).format(v)),
  num: (v, d = 2) => (v == null ? t("none") : new Intl.NumberFormat(locale(), { maximumFractionDigits: d }).format(v)),
  date: (ms) => (ms == null ? t("none") : new Intl.DateTimeFormat(locale(), {
    dateStyle: "medium", timeZone: state.summary?.time_zone || undefined,
  }).format(new Date(ms))),
};
/** A number as the page shows it, carrying the API's value for checks. */
const metric = (name, raw, kind = "int") =>
  `<span data-metric="${esc(name)}" data-raw="${esc(raw == null ? "" : raw)}">${esc(fmt[kind](raw))}</span>`;

// ---- The API ----
class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}
const m = (path) => `/v1/merchants/${encodeURIComponent(state.merchant)}${path}`;

// ---- Charts ----
function chart(element, option) {
  const instance = echarts.init(element, null, { renderer: "canvas" });
  instance.setOption({ animation: false, tooltip: { trigger: "item" }, ...option });
  element.dataset.points = String((option.series || []).reduce((n, s) => n + (s.data || []).length, 0));
  state.charts.push(instance);
  return instance;
}
function disposeCharts() {
  state.charts.forEach((c) => c.dispose());
  state.charts = [];
}
window.addEventListener("resize", () => state.charts.forEach((c) => c.resize()));

// ---- Sign-in ----
function readFragmentKey() {
  const match = location.hash.match(/(?:^#|&)key=([^&]+)/);
  if (!match) return;
  state.key = decodeURIComponent(match[1]);
  sessionStorage.setItem("recur.key", state.key);
  // Read once, then gone from the address bar and the history.
  history.replaceState(null, "", location.pathname + "#/overview");
}

async function signIn() {
  const who = await api("/v1/whoami");
  if (!state.merchant || !who.merchants.includes(state.merchant)) {
    state.merchant = who.merchant_id || who.merchants[0] || "";
  }
  sessionStorage.setItem("recur.merchant", state.merchant);
  return who;
}

function showSignIn(error) {
  $("#top").hidden = true;
  main().innerHTML = `
    <form class="signin" id="signin-form" data-testid="signin">
      <h1>Recur</h1>
      <label for="key">${t("key")}</label>
      <input id="key" name="key" type="password" autocomplete="off" data-testid="key-input">
      <div class="muted">${esc(t("keyHint"))}</div>
      ${error ? `<div class="error" data-testid="signin-error">${esc(error)}</div>` : ""}
      <div class="row"><button class="primary" type="submit" data-testid="signin-submit">${t("signin")}</button>
      <button type="button" id="lang-signin">${t("lang")}</button></div>
    </form>`;
  $("#lang-signin").onclick = () => { switchLang(); showSignIn(error); };
  $("#signin-form").onsubmit = async (event) => {
    event.preventDefault();
    state.key = $("#key").value.trim();
    sessionStorage.setItem("recur.key", state.key);
    await start();
  };
}

function signOut() {
  sessionStorage.removeItem("recur.key");
  sessionStorage.removeItem("recur.merchant");
  state.key = "";
  state.merchant = "";
  state.summary = null;
  location.hash = "";
  showSignIn();
}

function switchLang() {
  state.lang = state.lang === "zh" ? "en" : "zh";
  localStorage.setItem("recur.lang", state.lang);
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
}

// ---- Layout ----
function renderTop(who) {
  $("#top").hidden = false;
  const options = who.merchants.map((id) => `<option ${id === state.merchant ? "selected" : ""}>${esc(id)}</option>`).join("");
  $("#merchant").innerHTML = who.open && who.merchants.length > 1
    ? `<select id="merchant-select" aria-label="${t("merchant")}">${options}</select>`
    : esc(state.merchant);
  const select = $("#merchant-select");
  if (select) select.onchange = () => { state.merchant = select.value; sessionStorage.setItem("recur.merchant", state.merchant); state.summary = null; route(); };
  $("#lang").textContent = t("lang");
  $("#signout").textContent = t("signout");
  $("#nav").innerHTML = PAGES.map((p) => `<a href="#/${p}" data-page="${p}">${t(p)}</a>`).join("");
}

function page() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  return PAGES.includes(name) ? name : "overview";
}

async function route() {
  disposeCharts();
  const name = page();
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  main().innerHTML = `<p class="muted">${t("loading")}</p>`;
  main().dataset.page = name;
  main().dataset.ready = "false";
  try {
    if (!state.summary) state.summary = await api(m("/summary"));
    await RENDER[name]();
  } catch (error) {
    if (error.status === 401 || error.status === 403) return showSignIn(t("badKey") + ": " + error.message);
    main().innerHTML = `<div class="error" data-testid="page-error">${esc(error.message)}</div>`;
  }
  main().dataset.ready = "true";
}

// ---- Pages ----
const RENDER = {
  async overview() {
    const s = state.summary;
    const repeat = await api(m("/reports/repeat?period=month"));
    const rows = repeat.rows.filter((r) => r.cohort_start);
    main().innerHTML = `
      <h1>${t("overview")} <span class="muted">· ${t("asOf")} ${fmt.date(s.as_of_ms)}</span></h1>
      <div class="cards">
        <div class="card"><div class="label">${t("customers")}</div><div class="value">${metric("customers", s.customers)}</div></div>
        <div class="card"><div class="label">${t("orders")}</div><div class="value">${metric("orders", s.orders)}</div></div>
        <div class="card"><div class="label">${t("revenue")}</div><div class="value">${metric("revenue", s.revenue, "money")}</div></div>
        <div class="card"><div class="label">${t("repeatRate")}</div><div class="value">${metric("repeat_purchase_rate", s.repeat_purchase_rate, "pct")}</div></div>
        <div class="card"><div class="label">${t("repeatCustomers")}</div><div class="value">${metric("repeat_customers", s.repeat_customers)}</div></div>
        <div class="card"><div class="label">${t("users")}</div><div class="value">${metric("users", s.users)}</div></div>
      </div>
      <h2>${t("repeatTrend")}</h2>
      <div class="chart" data-chart="repeat"></div>`;
    chart($("[data-chart=repeat]"), {
      tooltip: { trigger: "axis", valueFormatter: (v) => fmt.pct(v) },
      xAxis: { type: "category", data: rows.map((r) => r.cohort_start) },
      yAxis: { type: "value", axisLabel: { formatter: (v) => fmt.pct(v) } },
      series: [{ type: "line", name: t("repeatRate"), data: rows.map((r) => r.repeat_rate) }],
    });
  },

  async retention() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const period = params.get("period") || "week";
    const mode = params.get("mode") || "first_time";
    const report = await api(m(`/reports/retention?period=${period}&mode=${mode}`));
    const cohorts = [...new Set(report.rows.map((r) => r.cohort_start))];
    const offsets = [...new Set(report.rows.map((r) => r.offset))].sort((a, b) => a - b);
    const link = (p, md, label, on) => `<a href="#/retention?period=${p}&mode=${md}" class="${on ? "pill" : "muted"}">${label}</a>`;
    main().innerHTML = `
      <h1>${t("retention")}</h1>
      <div class="row">${link("week", mode, t("week"), period === "week")} ${link("month", mode, t("month"), period === "month")}
        · ${link(period, "first_time", t("firstTime"), mode === "first_time")} ${link(period, "recurring", t("recurring"), mode === "recurring")}</div>
      <div class="chart tall" data-chart="retention"></div>`;
    const data = report.rows.map((r) => [offsets.indexOf(r.offset), cohorts.indexOf(r.cohort_start), r.rate]);
    chart($("[data-chart=retention]"), {
      tooltip: { formatter: (p) => `${cohorts[p.value[1]]} +${offsets[p.value[0]]}: ${fmt.pct(p.value[2])}` },
      grid: { left: 100, right: 30, top: 20, bottom: 80 },
      xAxis: { type: "category", name: t("offset"), data: offsets },
      yAxis: { type: "category", name: t("cohort"), data: cohorts, inverse: true },
      visualMap: { min: 0, max: 1, calculable: true, orient: "horizontal", left: "center", bottom: 10, inRange: { color: ["#f0fdfa", "#0f766e"] } },
      series: [{ type: "heatmap", data, label: { show: offsets.length <= 16, formatter: (p) => fmt.pct(p.value[2]) } }],
    });
  },

  async lifecycle() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const period = params.get("period") || "week";
    const report = await api(m(`/reports/lifecycle?period=${period}`));
    const rows = report.rows;
    const link = (p, label) => `<a href="#/lifecycle?period=${p}" class="${p === period ? "pill" : "muted"}">${label}</a>`;
    main().innerHTML = `
      <h1>${t("lifecycle")}</h1>
      <div class="row">${link("week", t("week"))} ${link("month", t("month"))}</div>
      <div class="chart tall" data-chart="lifecycle"></div>`;
    const stack = (key, sign = 1) => ({
      type: "bar", stack: "all", name: t(key), data: rows.map((r) => sign * r[key]),
    });
    chart($("[data-chart=lifecycle]"), {
      tooltip: { trigger: "axis", valueFormatter: (v) => fmt.int(Math.abs(v)) },
      legend: { top: 0 },
      xAxis: { type: "category", data: rows.map((r) => r.period_start) },
      yAxis: { type: "value" },
      series: [stack("new"), stack("returning"), stack("resurrecting"), stack("dormant", -1)],
    });
  },

  async rfm() {
    const [segments, classes] = await Promise.all([api(m("/reports/rfm?scheme=segments")), api(m("/reports/rfm?scheme=value-class"))]);
    const label = (r) => (state.lang === "zh" ? r.name_zh : r.name) || r.segment;
    const table = (report, testid) => `
      <table data-testid="${testid}"><tr><th>${t("segment")}</th><th class="num">${t("customers")}</th><th class="num">${t("share")}</th>
      <th class="num">${t("revenue")}</th><th class="num">${t("meanOrders")}</th><th class="num">${t("meanRecency")}</th></tr>
      ${report.rows.map((r) => `<tr><td>${esc(label(r))}</td><td class="num">${metric(`${testid}.${r.segment}.customers`, r.customers)}</td>
        <td class="num">${metric(`${testid}.${r.segment}.share`, r.share, "pct")}</td><td class="num">${metric(`${testid}.${r.segment}.revenue`, r.revenue, "money")}</td>
        <td class="num">${metric(`${testid}.${r.segment}.mean_orders`, r.mean_orders, "num")}</td><td class="num">${metric(`${testid}.${r.segment}.mean_recency_days`, r.mean_recency_days, "num")}</td></tr>`).join("")}
      </table>`;
    main().innerHTML = `
      <h1>${t("rfm")}</h1>
      <h2>${t("segments")}</h2><div class="chart" data-chart="rfm-segments"></div>${table(segments, "segments")}
      <h2>${t("valueClasses")}</h2><div class="chart" data-chart="rfm-classes"></div>${table(classes, "classes")}`;
    const bars = (report) => ({
      tooltip: { trigger: "axis" },
      grid: { left: 160, right: 30, top: 10, bottom: 30 },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: report.rows.map(label), inverse: true },
      series: [{ type: "bar", name: t("customers"), data: report.rows.map((r) => r.customers) }],
    });
    chart($("[data-chart=rfm-segments]"), bars(segments));
    chart($("[data-chart=rfm-classes]"), bars(classes));
  },

  async clusters() {
    const report = await api(m("/reports/clusters"));
    const details = new Map((state.summary.clusters || []).map((c) => [c.cluster, c]));
    main().innerHTML = `
      <h1>${t("clusters")}</h1>
      <div class="chart" data-chart="clusters"></div>
      <table data-testid="clusters"><tr><th>${t("cluster")}</th><th>${t("description")}</th><th class="num">${t("customers")}</th>
      <th class="num">${t("meanOrders")}</th><th class="num">${t("meanSpend")}</th></tr>
      ${report.rows.map((r) => `<tr><td>${r.cluster}</td><td>${esc(r.description)}</td><td class="num">${metric(`clusters.${r.cluster}.customers`, r.customers)}</td>
        <td class="num">${metric(`clusters.${r.cluster}.mean_orders`, details.get(r.cluster)?.mean_orders, "num")}</td>
        <td class="num">${metric(`clusters.${r.cluster}.mean_spend`, details.get(r.cluster)?.mean_spend, "money")}</td></tr>`).join("")}
      </table>`;
    chart($("[data-chart=clusters]"), {
      series: [{ type: "pie", radius: ["35%", "65%"], data: report.rows.map((r) => ({ name: r.description, value: r.customers })) }],
    });
  },

  async audiences() {
    const list = await api(m("/audiences"));
    const rows = list.audiences.map((a) => `<tr><td><a href="#/audiences" data-audience="${esc(a.name)}">${esc(a.name)}</a>
      <div class="muted">${esc(a.description || "")}</div></td><td class="num">${metric(`audiences.${a.name}.customers`, a.customers)}</td>
      <td>${fmt.date(a.created_at_ms)}</td></tr>`).join("");
    main().innerHTML = `
      <h1>${t("audiences")}</h1>
      ${list.audiences.length ? `<table data-testid="audiences"><tr><th>${t("name")}</th><th class="num">${t("size")}</th><th>${t("created")}</th></tr>${rows}</table>` : `<p class="muted">${t("noAudiences")}</p>`}
      <div id="members"></div>
      <h2>${t("create")}</h2>
      <form id="audience-form" data-testid="audience-form">
        <div class="row"><label>${t("name")} <input name="name" required data-testid="audience-name"></label></div>
        <label>${t("rule")}<textarea name="rule" data-testid="audience-rule">{"performed": {"event": "purchase", "at_least": 2, "in_last_days": 90}}</textarea></label>
        <div class="error" id="audience-error" data-testid="audience-error"></div>
        <div class="row"><button class="primary" type="submit">${t("create")}</button><span id="audience-ok" class="muted"></span></div>
      </form>`;
    document.querySelectorAll("[data-audience]").forEach((a) => (a.onclick = async (event) => {
      event.preventDefault();
      const name = a.dataset.audience;
      const members = await api(m(`/audiences/${encodeURIComponent(name)}/members?limit=20`));
      $("#members").innerHTML = `<h2>${t("preview")}: ${esc(name)} (${metric(`members.${name}.customers`, members.customers)})</h2>
        <p>${members.members.map((u) => `<a href="#/customer?user=${encodeURIComponent(u)}">${esc(u)}</a>`).join(", ") || t("none")}</p>`;
    }));
    $("#audience-form").onsubmit = async (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      $("#audience-error").textContent = "";
      $("#audience-ok").textContent = "";
      let rule;
      try {
        rule = JSON.parse(form.get("rule"));
      } catch (error) {
        $("#audience-error").textContent = error.message;
        return;
      }
      try {
        await api(m("/audiences"), {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name: form.get("name"), rule }),
        });
        $("#audience-ok").textContent = t("created_ok");
      } catch (error) {
        // The API says what is wrong and where (`bad_rule` names the path of the bad part).
        $("#audience-error").textContent = error.message;
      }
    };
  },

  async campaigns() {
    const list = await api(m("/campaigns"));
    if (!list.campaigns.length) {
      main().innerHTML = `<h1>${t("campaigns")}</h1><p class="muted">${t("noCampaigns")}</p>`;
      return;
    }
    const sections = await Promise.all(list.campaigns.map(async ({ campaign }) => {
      const name = campaign.name;
      const [plan, report] = await Promise.all([
        api(m(`/campaigns/${encodeURIComponent(name)}/plan?limit=1`)).catch((e) => ({ error: e.message })),
        api(m(`/campaigns/${encodeURIComponent(name)}/report`)).catch((e) => ({ error: e.message })),
      ]);
      const reasons = plan.counts ? Object.entries(plan.counts.skip_reasons) : [];
      const arm = (a, key) => `<td class="num">${metric(`${name}.${key}.customers`, a.customers)}</td>
        <td class="num">${metric(`${name}.${key}.conversion_rate`, a.conversion_rate, "pct")}</td>`;
      const lift = report.lift;
      return `<h2>${esc(name)} <span class="muted">· ${esc(campaign.goal)} · ${esc(campaign.channel)}</span></h2>
        ${plan.counts ? `<div class="cards">
          <div class="card"><div class="label">${t("send")}</div><div class="value">${metric(`${name}.plan.send`, plan.counts.send)}</div></div>
          <div class="card"><div class="label">${t("holdout")}</div><div class="value">${metric(`${name}.plan.holdout`, plan.counts.holdout)}</div></div>
          <div class="card"><div class="label">${t("skip")}</div><div class="value">${metric(`${name}.plan.skip`, plan.counts.skip)}</div>
          <div class="muted">${reasons.map(([r, n]) => `${esc(r)} ${metric(`${name}.plan.skip.${r}`, n)}`).join(" · ")}</div></div>
        </div>` : `<div class="error">${esc(plan.error)}</div>`}
        ${lift ? `<table data-testid="campaign-${esc(name)}"><tr><th></th><th class="num">${t("customers")}</th><th class="num">${t("conversion")}</th></tr>
          <tr><td>${t("treated")}</td>${arm(report.treated, "treated")}</tr>
          <tr><td>${t("holdout")}</td>${arm(report.holdout, "holdout")}</tr>
          <tr><td>${t("lift")}</td><td></td><td class="num">${metric(`${name}.lift.absolute`, lift.absolute, "pct")}
            <span class="muted">${t("interval")} ${lift.absolute_ci ? `${fmt.pct(lift.absolute_ci[0])} – ${fmt.pct(lift.absolute_ci[1])}` : t("none")}</span></td></tr>
        </table><p class="muted">${esc(report.summary)}</p>` : `<div class="error">${esc(report.error)}</div>`}`;
    }));
    main().innerHTML = `<h1>${t("campaigns")}</h1>${sections.join("")}`;
  },

  async customer() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const user = params.get("user") || "";
    main().innerHTML = `
      <h1>${t("customer")}</h1>
      <form id="lookup" class="row" data-testid="lookup"><input name="user" value="${esc(user)}" placeholder="${t("userId")}" data-testid="lookup-input">
      <button class="primary" type="submit">${t("lookup")}</button></form><div id="customer"></div>`;
    $("#lookup").onsubmit = (event) => {
      event.preventDefault();
      location.hash = `#/customer?user=${encodeURIComponent(new FormData(event.target).get("user"))}`;
    };
    if (!user) return;
    let profile;
    try {
      profile = (await api(m(`/users/${encodeURIComponent(user)}/profile`))).profile;
    } catch (error) {
      $("#customer").innerHTML = `<div class="error" data-testid="customer-error">${esc(error.status === 404 ? t("notFound") : error.message)}</div>`;
      return;
    }
    const list = await api(m(`/users/${encodeURIComponent(user)}/recommendations?k=10`));
    const field = (label, key, kind = "num") => `<div class="card"><div class="label">${label}</div><div class="value">${metric(`profile.${key}`, profile[key], kind)}</div></div>`;
    const orders = profile.recent_orders || [];
    const date = (label, key) => `<div class="card"><div class="label">${label}</div><div class="value" data-metric="profile.${key}" data-raw="${esc(profile[key] ?? "")}">${fmt.date(profile[key])}</div></div>`;
    $("#customer").innerHTML = `
      <h2>${t("profile")}: ${esc(profile.customer_id || user)}</h2>
      <div class="cards">${field(t("orders"), "orders", "int")}${field(t("revenue"), "revenue", "money")}
        ${field(t("pAlive"), "p_alive", "pct")}${field(t("clv"), "clv_12m", "money")}
        ${date(t("lastOrder"), "last_purchase_ms")}${date(t("nextOrder"), "expected_next_order_ms")}</div>
      <p class="muted">${esc(profile.rfm_segment || "")} · ${esc(profile.value_class || "")} · ${esc(profile.lifecycle_stage || "")}</p>
      <h2>${t("recommendations")}</h2>
      <table data-testid="recommendations"><tr><th>${t("item")}</th><th class="num">${t("score")}</th><th>${t("reason")}</th></tr>
        ${list.items.map((i) => `<tr><td>${esc(i.item_id)}</td><td class="num">${metric(`rec.${i.item_id}.score`, i.score, "num")}</td><td>${esc(i.detail)}</td></tr>`).join("")}</table>
      <h2>${t("recentOrders")}</h2>
      <table data-testid="recent-orders"><tr><th>${t("orders")}</th><th>${t("lastOrder")}</th><th class="num">${t("item")}</th><th class="num">${t("revenue")}</th></tr>
        ${orders.map((o) => `<tr><td>${esc(o.order_id)}</td><td>${fmt.date(o.ordered_at)}</td><td class="num">${fmt.int(o.items)}</td>
          <td class="num">${metric(`order.${o.order_id}.amount`, o.amount, "money")}</td></tr>`).join("")}</table>`;
  },
};

async function start() {
  readFragmentKey();
  try {
    const who = await signIn();
    if (!state.merchant) throw new ApiError(404, { error: { message: "no merchant in the snapshot yet: run `recur run`" } });
    renderTop(who);
    if (!location.hash.startsWith("#/")) location.hash = "#/overview";
    await route();
  } catch (error) {
    showSignIn(error.status === 401 || error.status === 403 ? `${t("badKey")}: ${error.message}` : error.message);
  }
}

document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
$("#lang").onclick = () => { switchLang(); start(); };
$("#signout").onclick = signOut;
window.addEventListener("hashchange", () => {
  if (/(?:^#|&)key=/.test(location.hash)) start(); // a sign-in link opened in this tab
  else if (state.merchant && !$("#top").hidden) route();
});
start();
