"""The account-level parts of the DigitalOcean fake (SSH keys, tags, load balancers), the
route table, and the JSON shapes every part shares."""

from __future__ import annotations

import re
from typing import Any

Answer = tuple[int, Any]


class AccountRoutes:
    """Handlers mixed into ``FakeDigitalOcean``, which owns the tables they read."""

    keys: dict[int, dict[str, Any]]
    tags: set[str]
    images: dict[int, dict[str, Any]]
    droplets: dict[int, dict[str, Any]]
    balancers: dict[str, dict[str, Any]]
    _ids: Any

    # account keys -------------------------------------------------------------------------------

    def get_keys(self, query: dict[str, str], **_: Any) -> Answer:
        return 200, page("ssh_keys", list(self.keys.values()), query)

    def post_keys(self, body: dict[str, Any], **_: Any) -> Answer:
        import asyncssh

        key = asyncssh.import_public_key(body["public_key"])
        fingerprint = key.get_fingerprint("md5").removeprefix("MD5:")
        if any(k["fingerprint"] == fingerprint for k in self.keys.values()):
            return 422, error("unprocessable_entity", "SSH Key is already in use on your account")
        key_id = next(self._ids)
        self.keys[key_id] = {
            "id": key_id,
            "name": body["name"],
            "fingerprint": fingerprint,
            "public_key": body["public_key"],
        }
        return 201, {"ssh_key": self.keys[key_id]}

    # tags ---------------------------------------------------------------------------------------

    def post_tags(self, body: dict[str, Any], **_: Any) -> Answer:
        name = body["name"]
        if not re.fullmatch(r"[A-Za-z0-9:_\-]{1,255}", name):
            return 422, error("unprocessable_entity", f"tag name {name!r} is invalid")
        self.tags.add(name)
        return 201, {"tag": {"name": name, "resources": {"count": 0}}}

    def post_tag_resources(self, tag: str, body: dict[str, Any], **_: Any) -> Answer:
        if tag not in self.tags:
            return 404, error("not_found", f"tag {tag} not found")
        for resource in body["resources"]:
            table = self.images if resource["resource_type"] == "image" else self.droplets
            item = table.get(int(resource["resource_id"]))
            if item is None:
                return 404, error("not_found", f"{resource} not found")
            if tag not in item["tags"]:
                item["tags"].append(tag)
        return 204, None

    def delete_tag_resources(self, tag: str, body: dict[str, Any], **_: Any) -> Answer:
        if tag not in self.tags:
            return 404, error("not_found", f"tag {tag} not found")
        for resource in body["resources"]:
            table = self.images if resource["resource_type"] == "image" else self.droplets
            item = table.get(int(resource["resource_id"]))
            if item is not None and tag in item["tags"]:
                item["tags"].remove(tag)
        return 204, None

    # load balancers -----------------------------------------------------------------------------

    def get_balancers(self, query: dict[str, str], **_: Any) -> Answer:
        return 200, page("load_balancers", list(self.balancers.values()), query)

    def get_balancer(self, lb: str, **_: Any) -> Answer:
        found = self.balancers.get(lb)
        if found is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        return 200, {"load_balancer": found}

    def post_balancer_droplets(self, lb: str, body: dict[str, Any], **_: Any) -> Answer:
        found = self.balancers.get(lb)
        if found is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        for droplet_id in body["droplet_ids"]:
            if droplet_id not in self.droplets:
                return 422, error("unprocessable_entity", f"droplet {droplet_id} not found")
            if droplet_id not in found["droplet_ids"]:
                found["droplet_ids"].append(droplet_id)
        return 204, None

    def delete_balancer_droplets(self, lb: str, body: dict[str, Any], **_: Any) -> Answer:
        found = self.balancers.get(lb)
        if found is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        found["droplet_ids"] = [d for d in found["droplet_ids"] if d not in body["droplet_ids"]]
        return 204, None


ROUTES = [
    (r"/v2/account/keys", "GET", "get_keys"),
    (r"/v2/account/keys", "POST", "post_keys"),
    (r"/v2/images", "GET", "get_images"),
    (r"/v2/images/(?P<ident>[^/]+)", "GET", "get_image"),
    (r"/v2/images/(?P<ident>[^/]+)", "PUT", "put_image"),
    (r"/v2/images/(?P<ident>\d+)", "DELETE", "delete_image"),
    (r"/v2/tags", "POST", "post_tags"),
    (r"/v2/tags/(?P<tag>[^/]+)/resources", "POST", "post_tag_resources"),
    (r"/v2/tags/(?P<tag>[^/]+)/resources", "DELETE", "delete_tag_resources"),
    (r"/v2/droplets", "GET", "get_droplets"),
    (r"/v2/droplets", "POST", "post_droplets"),
    (r"/v2/droplets", "DELETE", "delete_droplets"),
    (r"/v2/droplets/(?P<ident>\d+)", "GET", "get_droplet"),
    (r"/v2/droplets/(?P<ident>\d+)", "DELETE", "delete_droplet"),
    (r"/v2/droplets/(?P<ident>\d+)/snapshots", "GET", "get_droplet_snapshots"),
    (r"/v2/droplets/(?P<ident>\d+)/actions", "POST", "post_droplet_action"),
    (r"/v2/actions/(?P<ident>\d+)", "GET", "get_action"),
    (r"/v2/load_balancers", "GET", "get_balancers"),
    (r"/v2/load_balancers/(?P<lb>[^/]+)", "GET", "get_balancer"),
    (r"/v2/load_balancers/(?P<lb>[^/]+)/droplets", "POST", "post_balancer_droplets"),
    (r"/v2/load_balancers/(?P<lb>[^/]+)/droplets", "DELETE", "delete_balancer_droplets"),
]


def image_resource(
    image_id: int, name: str, tags: list[str], description: str, created: str, regions: list[str]
) -> dict[str, Any]:
    return {
        "id": image_id,
        "name": name,
        "type": "snapshot",
        "distribution": "Ubuntu",
        "slug": None,
        "public": False,
        "regions": regions,
        "created_at": created,
        "min_disk_size": 25,
        "size_gigabytes": 2.3,
        "description": description,
        "tags": list(tags),
        "status": "available",
    }


def error(ident: str, message: str) -> dict[str, Any]:
    return {"id": ident, "message": message, "request_id": "4d9d8375-3c56-4925-a3e7-eb137fed17e9"}


def page(key: str, items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    size = int(query.get("per_page", "20"))
    page = int(query.get("page", "1"))
    chunk = items[(page - 1) * size : page * size]
    links: dict[str, Any] = {"pages": {}}
    if page * size < len(items):
        links["pages"]["next"] = f"/v2/...?page={page + 1}&per_page={size}"
    return {key: chunk, "links": links, "meta": {"total": len(items)}}
